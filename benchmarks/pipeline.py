"""Pipeline benchmark: events/s end to end and peak memory of `marn preprocess` on the local runner.

    python benchmarks/pipeline.py                       # 1M events, 1 and 2 workers, 3 runs of each
    python benchmarks/pipeline.py --scaling 250000 500000 1000000 --workers 2   # memory vs. input size
    python benchmarks/pipeline.py --encoder-only        # tf.train.Example encoding, us per example

Each run is a fresh `marn preprocess` process (workers included) on data made once by
`marn generate-data` and cached under --data-dir. Memory is the resident set of the whole process
tree, of the runner process (which on the local runner also holds the shuffled data, as a shuffle
service would elsewhere) and of the largest worker process, sampled from /proc every 0.1 s.
Events/s counts every input event over the whole wall time, start-up included. After `--warmup` untimed runs
the settings (input size, workers) take turns `--repeats` times, and every figure is the median of a setting's
runs with the lowest and highest; `--json PATH` writes them as a record (`benchmarks/record.py`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from process_memory import process_tree  # benchmarks/, beside this script
from record import command_line, median_range, write_record

TARGET_EVENTS_PER_S = 20_000


def tree_rss_mb(root: int) -> tuple[float, float, float]:
    """Resident MB of (`root` and all its descendants, `root` alone, the largest descendant)."""
    tree = process_tree(root)
    largest_child = max((rss for pid, rss in tree.items() if pid != root), default=0)
    return sum(tree.values()) / 2**20, tree.get(root, 0) / 2**20, largest_child / 2**20


def run_measured(cmd: list[str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks = [0.0, 0.0, 0.0]
    while proc.poll() is None:
        peaks = [max(p, m) for p, m in zip(peaks, tree_rss_mb(proc.pid))]
        time.sleep(0.1)
    wall = time.perf_counter() - start
    output = proc.stdout.read()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{output[-3000:]}")
    return {"wall_s": wall, "peak_tree_mb": peaks[0], "peak_runner_mb": peaks[1], "peak_worker_mb": peaks[2]}


def ensure_data(events: int, data_dir: str) -> str:
    path = os.path.join(data_dir, f"events-{events}")
    if not os.path.exists(os.path.join(path, "config.yaml")):
        print(f"generating {events:,} events into {path} ...", flush=True)
        subprocess.run([sys.executable, "-m", "marn_tf.cli", "generate-data", "--output", path, "--events",
                        str(events), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return path


def preprocess_command(data: str, out: str, workers: int) -> list[str]:
    return [sys.executable, "-m", "marn_tf.cli", "preprocess", "--config", os.path.join(data, "config.yaml"),
            "--output", out, "--workers", str(workers), "--overwrite"]


def bench_pipeline(args) -> dict:
    sizes = args.scaling or [args.events]
    settings = [(events, workers) for events in sizes for workers in args.workers]
    data = {events: ensure_data(events, args.data_dir) for events in sizes}
    for index in range(args.warmup):  # untimed: the input files into the page cache, the modules compiled
        events, workers = settings[0]
        print(f"warm-up run {index + 1}/{args.warmup} ...", flush=True)
        run_measured(preprocess_command(data[events], os.path.join(args.data_dir, "out-warmup"), workers))
    measured: dict[tuple[int, int], list[dict]] = {s: [] for s in settings}
    for repeat in range(args.repeats):  # interleaved: each repeat runs every setting once, so drift hits all alike
        for events, workers in settings:
            out = os.path.join(args.data_dir, f"out-{events}-{workers}")
            command = preprocess_command(data[events], out, workers)
            print(f"repeat {repeat + 1}/{args.repeats}:", " ".join(command), flush=True)
            m = run_measured(command)
            with open(os.path.join(out, "report.json")) as f:
                m["events"] = json.load(f)["sources"]["events"]["in"]
            m["events_per_s"] = m["events"] / m["wall_s"]
            measured[(events, workers)].append(m)
    figures = ("wall_s", "events_per_s", "peak_tree_mb", "peak_runner_mb", "peak_worker_mb")
    rows = [{"events": runs[0]["events"], "workers": workers,
             **{key: median_range(r[key] for r in runs) for key in figures}}
            for (_, workers), runs in measured.items()]
    print(f"\n{command_line()}\nmedian [lowest, highest] of {args.repeats} interleaved runs after {args.warmup} "
          f"warm-up run(s)\n")
    print("| events | workers | wall s | events/s | peak MB, all processes | runner | largest worker |\n"
          "|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rate = r["events_per_s"]
        print(f"| {r['events']:,} | {r['workers']} | {r['wall_s']['median']:.1f} | {rate['median']:,.0f} "
              f"[{rate['low']:,.0f}, {rate['high']:,.0f}] | {r['peak_tree_mb']['median']:,.0f} | "
              f"{r['peak_runner_mb']['median']:,.0f} | {r['peak_worker_mb']['median']:,.0f} |")
    print("(with 1 worker the local runner executes in its own process: 'largest worker' is then empty)")
    best = max(rows, key=lambda r: r["events_per_s"]["median"])
    print(f"\ntarget >= {TARGET_EVENTS_PER_S:,} events/s on 2 cores: best median {best['events_per_s']['median']:,.0f} "
          f"({'met' if best['events_per_s']['median'] >= TARGET_EVENTS_PER_S else 'NOT met'})")
    result = {"repeats": args.repeats, "warmup": args.warmup, "runs": rows, "best": best,
              "target_events_per_s": TARGET_EVENTS_PER_S}
    if args.json:
        write_record(args.json, "pipeline", result)
    return result


def bench_encoder() -> None:
    import random
    import timeit

    import marn_tf  # noqa: F401
    from marn_tf.config import Config
    from marn_tf.pipelines import example_schema as ES
    from marn_tf.example_codec import ExampleEncoder

    config = Config.from_dict({"inputs": {"events": {"path": "-"}, "items": {"path": "-"}},
                               "split": {"train_end": "2026-01-02", "valid_end": "2026-01-03"},
                               "users": {"features": ["age_bucket", "gender", "city_tier"]}})
    features = ES.example_features(config)
    rng = random.Random(0)
    values = {f.name: ([f"i{rng.randrange(10**7):07d}" if f.dtype == "string" else rng.randrange(20)
                        for _ in range(f.shape[0])] if f.shape else ("x" if f.dtype == "string" else 3))
              for f in features}
    shared, own = ES.split_by_sharing(features)
    n = 5000
    for label, part in (("whole example", features), ("shared part (user, sequences)", shared),
                        ("own part (per impression)", own)):
        encoder = ExampleEncoder(part)
        encoder.encode(values)  # warm-up
        us = timeit.timeit(lambda: encoder.encode(values), number=n) / n * 1e6
        print(f"ExampleEncoder, {label}: {us:.1f} us ({len(part)} features, sequence length "
              f"{config.sequence.max_length})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events per run (default %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="local runner processes")
    parser.add_argument("--scaling", type=int, nargs="+", help="several input sizes, for memory vs. size")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved runs of every setting; figures are their median and range (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default %(default)s)")
    parser.add_argument("--data-dir", default="/tmp/marn-bench", help="generated data and outputs")
    parser.add_argument("--encoder-only", action="store_true", help="time tf.train.Example encoding only")
    parser.add_argument("--json", help="also write a record of the figures to this JSON file (benchmarks/record.py)")
    args = parser.parse_args()
    if args.encoder_only:
        bench_encoder()
    else:
        bench_pipeline(args)


if __name__ == "__main__":
    main()
