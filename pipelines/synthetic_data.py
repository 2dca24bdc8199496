"""`marn generate-data`: a synthetic e-commerce dataset in the raw formats a user brings (JSON lines, CSV or
Parquet; gzip), with its marn-tf config and `world.json`.

Deterministic by seed, written user by user (memory holds the catalog, one user's events and 7 bytes
per impression for the oracle figure, never the log), so it scales to 10M+ events. What is planted in it
(category kinds, a shared colour factor with per-modality noise, complementary missingness, cold items,
drifting users, the oracle) is `synthetic_world.py`; `--world realistic` writes the same files from
`realistic_world.py` instead (heavy tails, cold users and items, weak content, drift).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gzip
import json
import logging
import os
from typing import IO

import numpy as np
import yaml

from marn_tf.pipelines import realistic_world, synthetic_world
from marn_tf.pipelines.synthetic_world import GeneratorOptions, ImpressionTruth, bad_event, item_id, split_days

log = logging.getLogger(__name__)

WORLDS = {"planted": synthetic_world, "realistic": realistic_world}
EVENT_COLUMNS = ["user_id", "item_id", "timestamp", "event_type", "clicked", "request_id", "position", "query"]
ITEM_COLUMNS = ["item_id", "shop_id", "brand_id", "category_id", "image_embedding", "title", "sales_count",
                "review_count"]
USER_COLUMNS = ["user_id", "age_bucket", "gender", "city_tier"]


class _ShardWriter:
    """Writes rows to one file in JSON lines, CSV or Parquet."""

    def __init__(self, path: str, fmt: str, columns: list, compress: bool, arrow_schema=None):
        self.fmt, self.columns, self.rows = fmt, columns, []
        self.arrow_schema = arrow_schema
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(path, arrow_schema, compression="snappy")
        else:
            # mtime=0: the same seed gives the same bytes
            self.f: IO[bytes] = gzip.GzipFile(path, "wb", compresslevel=3, mtime=0) if compress else open(path, "wb")
            if fmt == "csv":
                self.f.write((",".join(columns) + "\n").encode())

    def write(self, row: dict) -> None:
        if self.fmt == "parquet":
            self.rows.append(row)
            if len(self.rows) >= 50_000:
                self._flush()
        elif self.fmt == "jsonl":
            self.f.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
        else:
            self.f.write(_csv_line([row.get(c) for c in self.columns]).encode() + b"\n")

    def write_raw(self, line: bytes) -> None:
        self.f.write(line + b"\n")

    def _flush(self):
        import pyarrow as pa

        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.arrow_schema))
            self.rows = []

    def close(self):
        if self.fmt == "parquet":
            self._flush()
            self.writer.close()
        else:
            self.f.close()


def _csv_line(values: list) -> str:
    out = []
    for v in values:
        if v is None:
            out.append("")
        elif isinstance(v, (list, np.ndarray)):
            out.append(" ".join(f"{x:.5g}" for x in v))  # vectors: space-separated floats
        else:
            s = str(v)
            out.append('"' + s.replace('"', '""') + '"' if any(ch in s for ch in ',"') else s)
    return ",".join(out)


def _arrow_schemas(image_dim: int):
    import pyarrow as pa

    events = pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("timestamp", pa.int64()),
                        ("event_type", pa.string()), ("clicked", pa.int64()), ("request_id", pa.string()),
                        ("position", pa.int64()), ("query", pa.string())])
    items = pa.schema([("item_id", pa.string()), ("shop_id", pa.string()), ("brand_id", pa.string()),
                       ("category_id", pa.string()), ("image_embedding", pa.list_(pa.float32())),
                       ("title", pa.string()), ("sales_count", pa.int64()), ("review_count", pa.int64())])
    users = pa.schema([(c, pa.string()) for c in USER_COLUMNS])
    return events, items, users


def dataset_config(opts: GeneratorOptions) -> dict:
    """The marn-tf config (as YAML data) of the dataset `generate(opts)` writes: its files, columns and split."""
    ext = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}[opts.format] + (
        ".gz" if opts.gzip and opts.format != "parquet" else "")
    train_start, days_train, days_valid = split_days(opts)
    day = lambda d: (dt.date.fromisoformat(opts.start_date) + dt.timedelta(days=d)).isoformat()  # noqa: E731
    root = os.path.abspath(opts.output)  # the config works from any directory
    return {
        "inputs": {"events": {"path": os.path.join(root, "events", "part-*")},
                   "items": {"path": os.path.join(root, "items", "items" + ext)},
                   "users": {"path": os.path.join(root, "users", "users" + ext)}},
        "users": {"features": USER_COLUMNS[1:]},
        # the generated counters are drawn before the log starts
        "items": {"image_dim": opts.image_dim, "statistics_as_of": day(0)},
        "split": {"train_start": day(train_start), "train_end": day(days_train), "valid_end": day(days_valid)},
    }


def generate(opts: GeneratorOptions, progress: bool = True) -> dict:
    """Writes events/, items/, users/, config.yaml and world.json under `opts.output`; returns counts.

    The output must be new, empty or a dataset this command wrote (`.marn-owner.json`): a directory of
    someone's own data is refused rather than overwritten (`marn_tf/storage/ownership.py`)."""
    from marn_tf.storage import ownership

    if opts.format not in ("jsonl", "csv", "parquet"):
        raise ValueError(f"--format must be jsonl, csv or parquet, not {opts.format!r}")
    if opts.world not in WORLDS:
        raise ValueError(f"--world must be one of {', '.join(WORLDS)}, not {opts.world!r}")
    with ownership.owned_directory(opts.output, ownership.GENERATE, "marn generate-data"):
        return _write_dataset(opts, progress)


def _write_dataset(opts: GeneratorOptions, progress: bool) -> dict:
    world = WORLDS[opts.world]
    rng = np.random.default_rng(opts.seed)
    cat = world.build_catalog(opts, rng)
    start = int(dt.datetime.fromisoformat(opts.start_date).replace(tzinfo=dt.timezone.utc).timestamp())
    ext = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}[opts.format]
    compress = opts.gzip and opts.format != "parquet"
    ext += ".gz" if compress else ""
    event_schema, item_schema, user_schema = _arrow_schemas(opts.image_dim)
    text = opts.format != "parquet"
    for sub in ("events", "items", "users"):
        os.makedirs(os.path.join(opts.output, sub), exist_ok=True)

    items_out = _ShardWriter(os.path.join(opts.output, "items", "items" + ext), opts.format, ITEM_COLUMNS, compress,
                             item_schema)
    for i in range(opts.items):
        counted = cat.has_statistics is None or cat.has_statistics[i]
        items_out.write(dict(
            item_id=item_id(i), shop_id=f"s{cat.shop[i]:05d}", brand_id=f"b{cat.brand[i]:05d}",
            category_id=f"c{cat.category[i]:02d}_{world.CATEGORY_WORDS[cat.category[i]]}",
            image_embedding=[round(float(x), 5) for x in cat.image[i]] if cat.has_image[i] else None,
            title=cat.title[i], sales_count=int(cat.sales[i]) if counted else None,
            review_count=int(cat.reviews[i]) if counted else None))
    items_out.close()

    users_out = _ShardWriter(os.path.join(opts.output, "users", "users" + ext), opts.format, USER_COLUMNS, compress,
                             user_schema)
    shards = [_ShardWriter(os.path.join(opts.output, "events", f"part-{s:05d}-of-{opts.shards:05d}{ext}"),
                           opts.format, EVENT_COLUMNS, compress, event_schema) for s in range(opts.shards)]
    counts = {"events": 0, "bad_events": 0, "impressions": 0, "clicks": 0}
    truth = ImpressionTruth()
    user_iter = range(opts.users)
    if progress:
        from tqdm import tqdm

        user_iter = tqdm(user_iter, desc="generate users", unit="user", mininterval=1.0)
    for u in user_iter:
        urng = np.random.default_rng([opts.seed, u])  # per-user stream: any user regenerates alike
        if urng.random() < 0.95:  # some users have no profile row
            users_out.write(dict(user_id=f"u{u:07d}", age_bucket=f"a{int(urng.integers(1, 7))}",
                                 gender=str(urng.choice(["f", "m", "n"])), city_tier=f"t{int(urng.integers(1, 5))}"))
        out = shards[u % opts.shards]
        for event in world.generate_user(u, cat, opts, urng, start, truth):
            out.write(event)
            counts["events"] += 1
            counts["impressions"] += event["event_type"] == "impression"
            counts["clicks"] += bool(event["clicked"])
            if opts.bad_record_rate and urng.random() < opts.bad_record_rate:
                bad = bad_event(urng, event, text)
                if bad == "malformed":
                    out.write_raw(b'{"user_id": "u1", "item_id": ' if opts.format == "jsonl" else b'u1,"unterminated')
                elif bad == "bad_utf8":
                    out.write_raw(json.dumps(event).replace("impression", "impr\udcffession").encode(
                        "utf-8", "surrogateescape") if opts.format == "jsonl" else
                        _csv_line([event.get(c) for c in EVENT_COLUMNS]).encode().replace(b"u", b"\xff", 1))
                else:
                    out.write(bad)
                counts["bad_events"] += 1
    for s in shards:
        s.close()
    users_out.close()

    with open(os.path.join(opts.output, "config.yaml"), "w") as f:
        f.write("# marn-tf config for this generated dataset; see docs/pipeline.md for every key.\n")
        yaml.safe_dump(dataset_config(opts), f, sort_keys=False)
    oracle = truth.oracle_auc(opts)
    log.info("oracle AUC (the true click probability): %s",
             ", ".join(f"{k} {'-' if v is None else f'{v:.4f}'}" for k, v in oracle.items()))
    description = {"options": dataclasses.asdict(opts), "counts": counts, "planted": world.planted(),
                   "oracle": oracle}
    if world is synthetic_world:  # the realistic world's categories have no planted kinds
        description["category_kind"] = {f"c{c:02d}_{w}": cat.kinds[c] for c, w in enumerate(world.CATEGORY_WORDS)}
    with open(os.path.join(opts.output, "world.json"), "w") as f:
        json.dump(description, f, indent=2)
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from marn_tf.export.job_arguments import at_least

    d = GeneratorOptions(output="")
    parser.add_argument("--output", required=True, help="directory to write events/, items/, users/, config.yaml")
    parser.add_argument("--users", type=at_least(1), default=d.users, help="number of users (default %(default)s)")
    parser.add_argument("--events", type=at_least(1), default=None,
                        help="approximate number of events; sets --users from it (about 200 events a user at "
                             "the defaults)")
    parser.add_argument("--items", type=at_least(1), default=d.items, help="catalog size (default %(default)s)")
    parser.add_argument("--days", type=at_least(5), default=d.days,
                        help="days of logs, at least 5 for the train, validation and test windows (default %(default)s)")
    parser.add_argument("--start-date", default=d.start_date, help="first day, ISO date (default %(default)s)")
    parser.add_argument("--image-dim", type=at_least(1), default=d.image_dim,
                        help="image vector size (default %(default)s)")
    parser.add_argument("--format", choices=["jsonl", "csv", "parquet"], default=d.format,
                        help="raw file format (default %(default)s)")
    parser.add_argument("--no-gzip", dest="gzip", action="store_false", help="write uncompressed text files")
    parser.add_argument("--shards", type=at_least(1), default=d.shards, help="event files (default %(default)s)")
    parser.add_argument("--bad-record-rate", type=_share, default=d.bad_record_rate,
                        help="share of extra broken event records, to exercise dead-lettering "
                             "(default %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    parser.add_argument("--world", choices=sorted(WORLDS), default=d.world,
                        help="planted: categories whose kinds say which modality matters (the embedded data); "
                             "realistic: heavy-tailed users and items, cold users and items, drifting tastes and "
                             "weak content, where the IDs carry most of the signal (default %(default)s)")


def _share(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a share: give a number from 0 to 1")
    return value


def options_from_args(args: argparse.Namespace) -> GeneratorOptions:
    fields = {f.name for f in dataclasses.fields(GeneratorOptions)}
    opts = GeneratorOptions(**{k: v for k, v in vars(args).items() if k in fields})
    if args.events:
        opts.users = max(1, round(args.events / events_per_user(opts)))
    return opts


def events_per_user(opts: GeneratorOptions) -> float:
    """Expected events per user: visits x requests x impressions x (1 + behaviour per impression)."""
    return opts.days * opts.sessions_per_day * 2 * opts.impressions_per_request * 1.25
