"""After the job: the schema (with vocabulary sizes) and the run report, from the job's exact counts.

The report checks the conservation rule of every input table: records in = accepted + dead-lettered.
"""
from __future__ import annotations

import json

from apache_beam.io.filesystems import FileSystems

from marn_tf.config import Config
from marn_tf.schema import SPLITS
from marn_tf.pipelines import example_schema as ES

COUNTS_FILE = "counts.json"
SOURCES = ("events", "items", "users")
_UNREADABLE = "unreadable_file\t"


IMAGE_PCA_FILE = "image_pca.json"  # with items.image_pca_dim: the fitted mean, components and explained variance


def unreadable_key(path: str, where: str) -> str:
    """The count key of a file that could not be read past `where` (tabs: paths hold colons)."""
    return f"{_UNREADABLE}{path}\t{where}"


_FILE_RECORDS, _FILE_DEAD, _FIELD_DEAD = "file_records\t", "file_dead_letters\t", "field_dead_letter\t"


def file_records_key(source: str, path: str) -> str:
    """The count key of one file's records (read, whether accepted or rejected)."""
    return f"{_FILE_RECORDS}{source}\t{path}"


def file_dead_key(source: str, path: str) -> str:
    """The count key of one file's records rejected on reading (not those of unknown items or duplicates: no
    fault of the file's)."""
    return f"{_FILE_DEAD}{source}\t{path}"


def field_dead_key(source: str, field: str, reason: str) -> str:
    """The count key of one bad optional field dropped from a record that was kept (outside the record balance)."""
    return f"{_FIELD_DEAD}{source}\t{field}\t{reason}"


def _file_rates(counts: dict, limit: float) -> list[dict]:
    """Per file: records read, rejected on reading, their share, whether past `limit`; worst first."""
    rows = []
    for key, n in counts.items():
        if key.startswith(_FILE_RECORDS):
            source, path = key[len(_FILE_RECORDS):].split("\t", 1)
            dead = counts.get(file_dead_key(source, path), 0)
            rate = round(dead / n, 6) if n else 0.0
            rows.append({"file": path, "source": source, "in": n, "dead_lettered": dead, "dead_letter_rate": rate,
                         "exceeded": rate > limit})
    return sorted(rows, key=lambda r: (-r["dead_letter_rate"], r["file"]))


def write_json(path: str, data: dict) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps(data, indent=2, sort_keys=True).encode("utf-8"))


def _read_json(path: str) -> dict:
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


def _sequence_summary(lengths: dict[int, int], max_length: int) -> dict:
    total = sum(lengths.values())
    if not total:
        return {}
    ordered = sorted(lengths.items())
    mean = sum(k * v for k, v in ordered) / total

    def quantile(q):
        seen = 0
        for k, v in ordered:
            seen += v
            if seen >= q * total:
                return k
        return ordered[-1][0]

    return {"mean": round(mean, 2), "p50": quantile(0.5), "p90": quantile(0.9),
            "empty_share": round(lengths.get(0, 0) / total, 4),
            "full_share": round(lengths.get(max_length, 0) / total, 4),
            "histogram": {str(k): v for k, v in ordered}}


def build_report(counts: dict, config: Config) -> dict:
    dead = {s: {} for s in SOURCES}
    for key, n in counts.items():
        if key.startswith("dead_letter:"):
            _, source, reason = key.split(":")
            dead[source][reason] = n
    sources = {}
    for s in SOURCES:
        n_in = counts.get(f"in:{s}", 0)
        accepted = counts.get(f"accepted:{s}", 0)
        rejected = sum(dead[s].values())
        fields = {}
        for key, n in counts.items():
            if key.startswith(f"{_FIELD_DEAD}{s}\t"):
                field, reason = key.split("\t")[2:]
                fields.setdefault(field, {})[reason] = n
        sources[s] = {"in": n_in, "accepted": accepted, "dead_lettered": rejected,
                      "dead_letter_rate": round(rejected / n_in, 6) if n_in else 0.0,
                      "balanced": n_in == accepted + rejected, "dead_letter_reasons": dict(sorted(dead[s].items())),
                      "kept_without_field": {f: dict(sorted(r.items())) for f, r in sorted(fields.items())}}
    splits = {}
    for split in SPLITS:
        n = counts.get(f"examples:{split}", 0)
        positives = counts.get(f"positives:{split}", 0)
        prefix = f"sequence_length:{split}:"
        lengths = {int(k[len(prefix):]): v for k, v in counts.items() if k.startswith(prefix)}
        splits[split] = {"examples": n, "positives": positives, "positive_rate": round(positives / n, 4) if n else 0.0,
                         "sequence_length": _sequence_summary(lengths, config.sequence.max_length)}
    examples = sum(s["examples"] for s in splits.values())
    history_only = counts.get("impressions:history_only", 0)
    items = counts.get("accepted:items", 0)
    events = sources["events"]
    report = {
        "sources": sources,
        "events_breakdown": {"examples": examples, "impressions_history_only": history_only,
                             "behaviour_events": events["accepted"] - examples - history_only},
        "splits": splits,
        "items": {"rows": items,
                  "missing_image_rate": round(counts.get("items:missing_image", 0) / items, 4) if items else 0.0,
                  "missing_title_rate": round(counts.get("items:missing_title", 0) / items, 4) if items else 0.0,
                  "cold_rate": round(counts.get("items:cold", 0) / items, 4) if items else 0.0,
                  "with_id_embedding": counts.get("item_id_embeddings", 0)},
        "vocabulary_sizes": {k.split(":", 1)[1]: v for k, v in sorted(counts.items())
                             if k.startswith("vocabulary_size:")},
        "unreadable_files": [dict(zip(("file", "where"), k[len(_UNREADABLE):].split("\t")))
                             for k in sorted(counts) if k.startswith(_UNREADABLE)],
    }
    limit = config.pipeline.max_dead_letter_rate
    report["dead_letter_rate_exceeded"] = {s: v["dead_letter_rate"] for s, v in sources.items()
                                           if v["dead_letter_rate"] > limit}
    report["files"] = _file_rates(counts, config.pipeline.max_file_dead_letter_rate)
    report["file_dead_letter_rate_exceeded"] = {f["file"]: f["dead_letter_rate"] for f in report["files"]
                                                if f["exceeded"]}
    report["empty_splits"] = {split: split_window(config, split) for split in SPLITS if not splits[split]["examples"]}
    return report


def split_window(config: Config, split: str) -> str:
    """The dates of a split's impressions, in the config's words."""
    c = config.split
    start = f"from split.train_start {c.train_start} " if c.train_start else ""
    return {"train": f"{start}before split.train_end {c.train_end}",
            "validation": f"from split.train_end {c.train_end} to split.valid_end {c.valid_end}",
            "test": f"from split.valid_end {c.valid_end} on"}[split]


def render_markdown(report: dict) -> str:
    lines = ["# Preprocess run report", "", "## Records in = accepted + dead-lettered", "",
             "| table | in | accepted | dead-lettered | rate | balanced |", "|---|---:|---:|---:|---:|---|"]
    for s, v in report["sources"].items():
        lines.append(f"| {s} | {v['in']:,} | {v['accepted']:,} | {v['dead_lettered']:,} | "
                     f"{v['dead_letter_rate']:.3%} | {'yes' if v['balanced'] else 'NO'} |")
    b = report["events_breakdown"]
    lines += ["", f"Accepted events: {b['examples']:,} impressions became examples, "
                  f"{b['impressions_history_only']:,} impressions before train_start serve as history only, "
                  f"{b['behaviour_events']:,} behaviour events feed the sequences.", "",
              "## Dead letters by reason", "", "| table | reason | records |", "|---|---|---:|"]
    for s, v in report["sources"].items():
        for reason, n in v["dead_letter_reasons"].items():
            lines.append(f"| {s} | {reason} | {n:,} |")
    kept = [(s, field, reason, n) for s, v in report["sources"].items()
            for field, reasons in v["kept_without_field"].items() for reason, n in reasons.items()]
    if kept:
        lines += ["", "Records kept with an optional field marked missing (a dead letter each, naming the field):",
                  "", "| table | field | reason | records |", "|---|---|---|---:|"]
        lines += [f"| {s} | {field} | {reason} | {n:,} |" for s, field, reason, n in kept]
    rejected = [f for f in report["files"] if f["dead_lettered"]]
    if rejected:
        lines += ["", "## Dead letters by file (rejected on reading)", "",
                  "| file | table | in | dead-lettered | rate |", "|---|---|---:|---:|---:|"]
        lines += [f"| {f['file']} | {f['source']} | {f['in']:,} | {f['dead_lettered']:,} | {f['dead_letter_rate']:.2%}"
                  f"{' **over the limit**' if f['exceeded'] else ''} |" for f in rejected[:50]]
        if len(rejected) > 50:
            lines.append(f"\n{len(rejected) - 50:,} more files with dead letters: see report.json")
    if report["unreadable_files"]:
        lines += ["", "Files that could not be read to their end (the rest of each is one `unreadable_file` "
                      "dead letter):", ""]
        lines += [f"- {u['file']}: from {u['where']}" for u in report["unreadable_files"]]
    lines += ["", "## Splits", "", "| split | examples | positive rate | mean seq. length | p50 | p90 | empty | full |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for split, v in report["splits"].items():
        q = v["sequence_length"] or {"mean": 0, "p50": 0, "p90": 0, "empty_share": 0, "full_share": 0}
        lines.append(f"| {split} | {v['examples']:,} | {v['positive_rate']:.2%} | {q['mean']} | {q['p50']} | "
                     f"{q['p90']} | {q['empty_share']:.1%} | {q['full_share']:.1%} |")
    it = report["items"]
    lines += ["", "## Item table", "",
              f"{it['rows']:,} items; missing image {it['missing_image_rate']:.1%}, missing title "
              f"{it['missing_title_rate']:.1%}, cold (no training-window event) {it['cold_rate']:.1%}; "
              f"{it['with_id_embedding']:,} items with their own ID embedding."]
    content = report.get("item_content", {})
    if content.get("source") == "examples":
        missing = content["without_content"]
        lines += ["", f"Every example carries its items' content (pipeline.item_content: examples); items without a "
                      f"table row: {missing['candidates']:,} candidates, {missing['behaviour_items']:,} behaviour items."]
    if "image_pca" in content:
        pca = content["image_pca"]
        lines += ["", f"Image vectors reduced from {pca['from_dims']} to {pca['to_dims']} dimensions by a PCA fitted on "
                      f"{pca['fitted_on_vectors']:,} training-window vectors ({pca['explained_variance']:.1%} of their "
                      f"variance kept; {IMAGE_PCA_FILE})."]
    lines += ["", "## Vocabularies (tokens, OOV index 0 not counted)", ""]
    lines += [f"- {k}: {v:,}" for k, v in report["vocabulary_sizes"].items()]
    if report["dead_letter_rate_exceeded"]:
        lines += ["", "**FAILED: dead-letter rate above pipeline.max_dead_letter_rate for "
                      + ", ".join(report["dead_letter_rate_exceeded"]) + "**"]
    if report["file_dead_letter_rate_exceeded"]:
        lines += ["", "**FAILED: dead-letter rate above pipeline.max_file_dead_letter_rate for "
                      + ", ".join(report["file_dead_letter_rate_exceeded"]) + "**"]
    for split, window in report["empty_splits"].items():
        lines += ["", f"**FAILED: the {split} split has no example (impressions {window})**"]
    return "\n".join(lines) + "\n"


def _content_summary(counts: dict, config: Config, output: str) -> dict:
    """Where the item content went and how the image vectors were reduced (report["item_content"])."""
    summary = {"source": config.pipeline.item_content}
    if config.pipeline.item_content == "examples":  # 0 unless an item of an example had no table row (a bug)
        summary["without_content"] = {"candidates": counts.get("examples:candidates_without_content", 0),
                                      "behaviour_items": counts.get("examples:behaviour_items_without_content", 0)}
    if config.items.image_pca_dim:
        pca = _read_json(FileSystems.join(output, IMAGE_PCA_FILE))
        summary["image_pca"] = {"from_dims": config.items.image_dim, "to_dims": config.items.image_pca_dim,
                                "fitted_on_vectors": pca["num_vectors"],
                                "explained_variance": round(sum(pca["explained_variance_ratio"]), 4)}
    return summary


def finalize(config: Config, output: str) -> dict:
    """Reads the job's counts, writes schema.json, report.json and report.md; returns the report."""
    counts = _read_json(FileSystems.join(output, COUNTS_FILE))
    report = build_report(counts, config)
    report["item_content"] = _content_summary(counts, config, output)
    unbalanced = [s for s, v in report["sources"].items() if not v["balanced"]]
    if unbalanced:  # a bug in the job, never a data problem: say so loudly
        raise RuntimeError(f"records lost in the pipeline (a bug, please report it) for {unbalanced}: {report['sources']}")
    schema = ES.build_schema(config, report["vocabulary_sizes"], report["items"]["with_id_embedding"],
                             {split: v["examples"] for split, v in report["splits"].items()})
    schema.save(output)
    write_json(FileSystems.join(output, "report.json"), report)
    with FileSystems.create(FileSystems.join(output, "report.md")) as f:
        f.write(render_markdown(report).encode("utf-8"))
    return report
