"""Renders the documentation's tables from the benchmark records in benchmarks/results/ (`benchmarks/record.py`).

    python benchmarks/render.py            # fills every rendered block of the repository's markdown files
    python benchmarks/render.py --check    # changes nothing; exits 1 naming every block that differs

A block is the text between `<!-- rendered: NAME -->` and `<!-- end rendered: NAME -->` in a markdown file of
the repository; NAME picks the table (`RENDERERS`). Every block ends with the records it was rendered from:
file, command, date and machine. Which records:

* quality tables: per world, each model's row comes from the newest quality record (by its date) that ran that
  model on that world; the floor and the oracle from the newest record of the world that measured them;
* quality targets: the newest quality record that ran the whole ladder on both worlds;
* speed tables: the newest speed record (`benchmarks/run_all.py --json`) made at the documented sizes (not
  `--quick`).

A block whose record is missing is left as it is and reported, so `--check` fails until the record exists.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
from typing import Callable

from run_all import markdown, rows, spread  # benchmarks/, beside this script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join("benchmarks", "results")
LADDER = ("din", "concat", "man", "maan", "marn")
WORLDS = ("default", "realistic")
BLOCK = re.compile(r"<!-- rendered: (?P<name>[\w-]+) -->[ \t]*\n?(?P<body>.*?)<!-- end rendered: (?P=name) -->",
                   re.DOTALL)
MARKER = re.compile(r"<!-- (?:end )?rendered: [\w-]+ -->")
SPEED_COMMAND = "python benchmarks/run_all.py --json benchmarks/results/speed-$(date +%F).json"


class MissingRecord(Exception):
    """No record in benchmarks/results/ holds what a block shows."""


# -- records -----------------------------------------------------------------------------------------------
def moment(record: dict) -> datetime.datetime:
    """The record's date as an aware datetime (a date alone counts as its midnight, UTC)."""
    when = datetime.datetime.fromisoformat(record["date"])
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def load_records(root: str) -> list[tuple[str, dict]]:
    """(path relative to `root`, record) of every record in `root`/benchmarks/results, oldest first."""
    folder = os.path.join(root, RESULTS)
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                record = json.load(f)
            if isinstance(record, dict) and "kind" in record and "figures" in record:
                found.append((os.path.join(RESULTS, name), record))
    return sorted(found, key=lambda item: moment(item[1]))


def when(record: dict) -> str:
    stamp = moment(record)
    return stamp.strftime("%Y-%m-%d") if len(record["date"]) == 10 else stamp.strftime("%Y-%m-%d %H:%M UTC")


def machine(record: dict) -> str:
    m = record.get("machine") or {}
    gpu = ", ".join(m["gpu"]) if m.get("gpu") else "no GPU"
    text = f"{m.get('cpu', 'unknown CPU')}, {m.get('cores', '?')} cores, {gpu}"
    return text + (f", shared with {m['shared_with']}" if m.get("shared_with") else "")


def source(path: str, record: dict, command: str | None = None) -> str:
    """The line a block ends with: the record file, its command, date and machine (and its note)."""
    note = f"; {record['note']}" if record.get("note") else ""
    return f"`{path}`: `{command or record['command']}`; {when(record)}; {machine(record)}{note}"


# -- quality -----------------------------------------------------------------------------------------------
def mean_std(values: list[float]) -> str:
    """Mean ± sample std (ddof 1; 0 for one seed)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def quality_sources(root: str) -> tuple[dict, list[tuple[str, dict]]]:
    """{world: {"rows": {model: (runs, label)}, "floor_auc": (value, label), "oracle_auc": ...}} and the records
    used, labelled a, b, ... in order of use."""
    records = [(p, r) for p, r in load_records(root) if r["kind"] == "quality"]
    if not records:
        raise MissingRecord(f"no quality record in {RESULTS}/: run `python benchmarks/quality.py --json "
                            f"{RESULTS}/quality-WORLD-$(date +%F).json`")
    used: list[tuple[str, dict]] = []

    def label(item: tuple[str, dict]) -> str:
        if item not in used:
            used.append(item)
        return "abcdefghijklmnopqrstuvwxyz"[used.index(item)]

    worlds: dict[str, dict] = {}
    for item in reversed(records):  # newest first: the first to give a row keeps it
        for world, figures in item[1]["figures"]["worlds"].items():
            found = worlds.setdefault(world, {"rows": {}})
            for model, runs in figures["runs"].items():
                if model not in found["rows"] and runs:
                    found["rows"][model] = (runs, label(item))
            for key in ("floor_auc", "oracle_auc"):
                if key not in found and figures.get(key) is not None:
                    found[key] = (figures[key], label(item))
    order = [w for w in WORLDS if w in worlds] + sorted(set(worlds) - set(WORLDS))
    return {w: worlds[w] for w in order}, used


def models_of(rows_by_model: dict) -> list[str]:
    return [m for m in LADDER if m in rows_by_model] + sorted(set(rows_by_model) - set(LADDER))


def footer(rule: str, used: list[tuple[str, dict]]) -> list[str]:
    return ["", rule, ""] + [f"- ({'abcdefghijklmnopqrstuvwxyz'[i]}) {source(p, r)}" for i, (p, r) in enumerate(used)]


QUALITY_RULE = ("Test AUC of each run's best-validation checkpoint, mean ± sample std over seeds. Per world, each "
                "row comes from the newest quality record that ran it on that world (the letter in its cell):")


def render_quality(root: str) -> str:
    """The ladder's test AUC per world beside the no-model floor and the oracle."""
    worlds, used = quality_sources(root)
    names = list(worlds)
    models = [m for m in LADDER if any(m in w["rows"] for w in worlds.values())]
    models += sorted({m for w in worlds.values() for m in w["rows"]} - set(models))
    lines = ["| model | " + " | ".join(f"{w} world: test AUC" for w in names) + " |",
             "|---|" + "---:|" * len(names)]

    def fixed(key: str, title: str) -> None:
        if any(key in w for w in worlds.values()):
            cells = [f"{w[key][0]:.4f} ({w[key][1]})" if key in w else "–" for w in worlds.values()]
            lines.append(f"| {title} | " + " | ".join(cells) + " |")

    fixed("floor_auc", "no-model floor (item + user click rates)")
    for model in models:
        cells = [f"{mean_std([r['test_auc'] for r in w['rows'][model][0]])} ({len(w['rows'][model][0])} seeds, "
                 f"{w['rows'][model][1]})" if model in w["rows"] else "–" for w in worlds.values()]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    fixed("oracle_auc", "oracle (the generator's click probability)")
    return "\n".join(lines + footer(QUALITY_RULE, used))


def render_quality_detail(root: str) -> str:
    """Per world: validation and test AUC, test GAUC and best step of every model."""
    worlds, used = quality_sources(root)
    lines: list[str] = []
    for world, found in worlds.items():
        lines += [f"**{world} world**", "",
                  "| model | seeds | validation AUC | test AUC | test GAUC | best step | record |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        if "floor_auc" in found:
            lines.append(f"| no-model floor | – | – | {found['floor_auc'][0]:.4f} | – | – | ({found['floor_auc'][1]}) |")
        for model in models_of(found["rows"]):
            runs, mark = found["rows"][model]
            steps = [r["best_step"] for r in runs if r.get("best_step") is not None]
            cells = [mean_std([r[key] for r in runs]) for key in ("validation_auc", "test_auc", "test_gauc")]
            step = f"{statistics.median(steps):.0f}" if steps else "–"
            lines.append(f"| {model} | {len(runs)} | {' | '.join(cells)} | {step} | ({mark}) |")
        if "oracle_auc" in found:
            lines.append(f"| oracle | – | – | {found['oracle_auc'][0]:.4f} | – | – | ({found['oracle_auc'][1]}) |")
        lines.append("")
    rule = ("Mean ± sample std over seeds, of each run's best-validation checkpoint; best step: the median over seeds "
            "of the step of the best validation AUC. Each row comes from the newest quality record that ran it on its "
            "world:")
    return "\n".join(lines[:-1] + footer(rule, used))


def render_quality_targets(root: str) -> str:
    """The targets of `benchmarks/quality_targets.py` as measured by the newest quality record that ran the whole
    ladder on both worlds: each with its figure, goal and whether it is met."""
    found = [(p, r) for p, r in load_records(root) if r["kind"] == "quality" and r["figures"].get("targets")
             and set(WORLDS) <= set(r["figures"]["worlds"])
             and all(set(LADDER) <= set(w["runs"]) for w in r["figures"]["worlds"].values())]
    if not found:
        raise MissingRecord(f"no quality record in {RESULTS}/ ran the whole ladder on both worlds: run `python "
                            f"benchmarks/quality.py --json {RESULTS}/quality-$(date +%F).json`")
    path, record = found[-1]
    targets = record["figures"]["targets"]
    lines = ["| target | measured | goal | met |", "|---|---:|---|---|"]
    for t in targets:
        measured = t["measured"]
        shown = ", ".join(f"{v:.4f}" for v in measured) if isinstance(measured, list) else f"{measured:+.4f}" if (
            "accuracy" not in t["name"]) else f"{measured:.3f}"
        lines.append(f"| {t['name']} | {shown} | {t['target']} | {'yes' if t['met'] else 'NO'} |")
    met = sum(t["met"] for t in targets)
    return "\n".join(lines) + f"\n\n{met} of {len(targets)} targets met. From {source(path, record).rstrip('.')}."


# -- speed -------------------------------------------------------------------------------------------------
def speed_record(root: str) -> tuple[str, dict]:
    """The newest speed record made at the documented sizes."""
    found = [(p, r) for p, r in load_records(root) if r["kind"] == "speed" and not r["figures"].get("quick")]
    if not found:
        raise MissingRecord(f"no speed record in {RESULTS}/ made at the documented sizes: on a quiet machine run "
                            f"`{SPEED_COMMAND}`, then `python benchmarks/render.py`")
    return found[-1]


def part_footer(path: str, record: dict, part: str) -> str:
    """The source line of a table of one part of a speed record: the part's own command."""
    inner = record["figures"][part]
    return (f"\n\nMedian [lowest, highest] of {inner['figures'].get('repeats', 1)} interleaved runs. From "
            f"{source(path, record)}; this table: `{inner['command']}`.")


def render_speed(root: str) -> str:
    """Training and serving speed at a glance (with the pipeline's throughput)."""
    path, record = speed_record(root)
    f = record["figures"]
    pipeline, training, serving = (f[k]["figures"] for k in ("pipeline", "training", "serving"))
    best, marn = pipeline["best"], training["models"]["MARN (width 32)"]
    latency = serving["median"]["MARN"]
    lines = ["| figure | median [lowest, highest] |", "|---|---:|",
             f"| pipeline: events/s end to end ({best['events']:,} events, {best['workers']} workers) | "
             f"{spread(best['events_per_s'])} |",
             f"| training: MARN examples/s (width 32, batch {training['batch_size']}) | "
             f"{spread(marn.get('examples_per_second'))} |",
             f"| serving: MARN p99, 1 user x 100 candidates | {spread(latency['ranking']['p99_ms'], '{:.2f}', ' ms')} |",
             f"| serving: MARN p99, batch 512 | {spread(latency['batch']['p99_ms'], '{:.2f}', ' ms')} |"]
    return "\n".join(lines) + f"\n\nInterleaved runs of each benchmark. From {source(path, record)}."


def render_speed_targets(root: str) -> str:
    """`benchmarks/run_all.py`'s table: every speed target beside its measured figure."""
    path, record = speed_record(root)
    f = record["figures"]
    return (markdown(rows(f["pipeline"]["figures"], f["training"]["figures"], f["serving"]["figures"]))
            + f"\n\nFrom {source(path, record)}.")


def render_training(root: str) -> str:
    """examples/s, peak memory and parameters of every model of the speed record's training part."""
    path, record = speed_record(root)
    training = record["figures"]["training"]["figures"]
    lines = ["| model | examples/s | peak memory (MB) | parameters |", "|---|---:|---:|---:|"]
    for label, m in training["models"].items():
        if "error" in m:
            lines.append(f"| {label} | failed | – | – |")
        else:
            lines.append(f"| {label} | {spread(m['examples_per_second'])} | {spread(m['peak_memory_mb'])} | "
                         f"{m['parameters']:,} |")
    note = (f"\n\n{training['device']}; batch {training['batch_size']}, {training['steps']} timed steps after "
            f"{training['warmup']} warm-up steps, each model in its own process.")
    return "\n".join(lines) + note + part_footer(path, record, "training")


def render_pipeline(root: str) -> str:
    """`marn preprocess` throughput and peak memory per setting of the speed record's pipeline part."""
    path, record = speed_record(root)
    pipeline = record["figures"]["pipeline"]["figures"]
    lines = ["| events | workers | events/s | wall s | peak MB: all processes / runner / largest worker |",
             "|---:|---:|---:|---:|---:|"]
    for r in pipeline["runs"]:
        memory = " / ".join(f"{r[k]['median']:,.0f}" for k in ("peak_tree_mb", "peak_runner_mb", "peak_worker_mb"))
        lines.append(f"| {r['events']:,} | {r['workers']} | {spread(r['events_per_s'])} | "
                     f"{spread(r['wall_s'], '{:.1f}')} | {memory} |")
    return "\n".join(lines) + part_footer(path, record, "pipeline")


def render_serving(root: str) -> str:
    """p50 / p99 of both request shapes, MARN beside the DIN peer, from the speed record's serving part."""
    path, record = speed_record(root)
    serving = record["figures"]["serving"]["figures"]
    lines = ["| model | 1 user x 100 candidates: p50 / p99 ms | batch 512: p50 / p99 ms | load s |",
             "|---|---:|---:|---:|"]
    for name, m in serving["median"].items():
        cells = [" / ".join(spread(m[shape][k], "{:.2f}") for k in ("p50_ms", "p99_ms")) for shape in ("ranking",
                                                                                                   "batch")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {spread(m['load_s'], '{:.1f}')} |")
    note = (f"\n\n{serving['calls']} timed calls per shape, one at a time, after {serving['warmup']} warm-up "
            f"calls, each model in a fresh process.")
    return "\n".join(lines) + note + part_footer(path, record, "serving")


RENDERERS: dict[str, Callable[[str], str]] = {
    "quality": render_quality, "quality-detail": render_quality_detail, "quality-targets": render_quality_targets,
    "speed": render_speed,
    "speed-targets": render_speed_targets, "training": render_training, "pipeline": render_pipeline,
    "serving": render_serving}


# -- pages -------------------------------------------------------------------------------------------------
def pages(root: str) -> list[str]:
    """The markdown files of `root` (those git tracks or would track; every *.md outside hidden folders when
    `root` is no git checkout), relative to it."""
    try:
        done = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"], cwd=root,
                              capture_output=True, text=True, timeout=60)
        if done.returncode == 0 and os.path.isdir(os.path.join(root, ".git")):
            return sorted({p for p in done.stdout.splitlines() if os.path.exists(os.path.join(root, p))})
    except (OSError, subprocess.SubprocessError):
        pass
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        found += [os.path.relpath(os.path.join(folder, f), root) for f in files if f.endswith(".md")]
    return sorted(found)


def render_text(text: str, root: str, page: str = "") -> tuple[str, list[str]]:
    """`text` with every block rendered, and the problems: unknown names, missing records, unmatched markers
    (a block that cannot be rendered is left as it is)."""
    problems: list[str] = []
    cache: dict[str, str] = {}

    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            problems.append(f"{page}: block `{name}`: no such table (known: {', '.join(RENDERERS)})")
            return match[0]
        try:
            body = cache[name] if name in cache else cache.setdefault(name, RENDERERS[name](root).strip("\n"))
        except MissingRecord as missing:
            problems.append(f"{page}: block `{name}`: {missing}")
            return match[0]
        return f"<!-- rendered: {name} -->\n{body}\n<!-- end rendered: {name} -->"

    rendered = BLOCK.sub(fill, text)
    stray = len(MARKER.findall(text)) - 2 * len(BLOCK.findall(text))
    if stray:
        problems.append(f"{page}: {stray} rendered marker(s) without their pair")
    return rendered, problems


def run(root: str, check: bool) -> list[str]:
    """Renders (or with `check`, compares) every block of every page; returns the problems."""
    problems: list[str] = []
    for page in pages(root):
        path = os.path.join(root, page)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if not MARKER.search(text):
            continue
        rendered, found = render_text(text, root, page)
        problems += found
        if rendered == text:
            continue
        if check:
            differing = [a["name"] for a, b in zip(BLOCK.finditer(text), BLOCK.finditer(rendered)) if a[0] != b[0]]
            problems.append(f"{page}: block(s) {', '.join(f'`{n}`' for n in differing)} differ from the records "
                            f"(run `python benchmarks/render.py`)")
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(rendered)
            print(f"rendered {page}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a block differs")
    parser.add_argument("--root", default=REPO, help="the repository (default: this one)")
    args = parser.parse_args(argv)
    problems = run(args.root, args.check)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
