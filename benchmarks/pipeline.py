"""Pipeline benchmark: events/s end to end and peak memory of `marn preprocess` on the local runner.

    python benchmarks/pipeline.py                       # 1M events, 1 and 2 workers
    python benchmarks/pipeline.py --scaling 250000 500000 1000000 --workers 2   # memory vs. input size
    python benchmarks/pipeline.py --encoder-only        # tf.train.Example encoding, us per example

Each run is a fresh `marn preprocess` process (workers included) on data made once by
`marn generate-data` and cached under --data-dir. Memory is the resident set of the whole process
tree, of the runner process (which on the local runner also holds the shuffled data, as a shuffle
service would elsewhere) and of the largest worker process, sampled from /proc every 0.1 s.
Events/s counts every input event over the whole wall time, start-up included.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from process_memory import process_tree  # benchmarks/, beside this script

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


def write_json(path: str, figures: dict) -> None:
    with open(path, "w") as f:
        json.dump(figures, f, indent=2)


def ensure_data(events: int, data_dir: str) -> str:
    path = os.path.join(data_dir, f"events-{events}")
    if not os.path.exists(os.path.join(path, "config.yaml")):
        print(f"generating {events:,} events into {path} ...", flush=True)
        subprocess.run([sys.executable, "-m", "marn_tf.cli", "generate-data", "--output", path, "--events",
                        str(events), "--quiet"], check=True, stdout=subprocess.DEVNULL)
    return path


def bench_pipeline(args) -> None:
    sizes = args.scaling or [args.events]
    rows = []
    for events in sizes:
        data = ensure_data(events, args.data_dir)
        for workers in args.workers:
            out = os.path.join(args.data_dir, f"out-{events}-{workers}")
            cmd = [sys.executable, "-m", "marn_tf.cli", "preprocess", "--config", os.path.join(data, "config.yaml"),
                   "--output", out, "--workers", str(workers), "--overwrite"]
            print("running:", " ".join(cmd), flush=True)
            m = run_measured(cmd)
            with open(os.path.join(out, "report.json")) as f:
                n_in = json.load(f)["sources"]["events"]["in"]
            rows.append((n_in, workers, m["wall_s"], n_in / m["wall_s"], m["peak_tree_mb"], m["peak_runner_mb"],
                         m["peak_worker_mb"]))
    print(f"\n{'events':>10} {'workers':>7} {'wall s':>8} {'events/s':>10} {'peak MB all':>12} "
          f"{'runner':>8} {'1 worker':>9}")
    for n, w, wall, rate, tree, runner, worker in rows:
        print(f"{n:>10,} {w:>7} {wall:>8.1f} {rate:>10,.0f} {tree:>12,.0f} {runner:>8,.0f} {worker:>9,.0f}")
    print("(with 1 worker the local runner executes in its own process: '1 worker' is then empty)")
    best = max(r[3] for r in rows)
    print(f"\ntarget >= {TARGET_EVENTS_PER_S:,} events/s on 2 cores: best {best:,.0f} "
          f"({'met' if best >= TARGET_EVENTS_PER_S else 'NOT met'})")
    if args.json:
        keys = ("events", "workers", "wall_s", "events_per_s", "peak_all_mb", "peak_runner_mb", "peak_worker_mb")
        write_json(args.json, {"runs": [dict(zip(keys, r)) for r in rows], "best_events_per_s": best,
                               "target_events_per_s": TARGET_EVENTS_PER_S})


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
    parser.add_argument("--data-dir", default="/tmp/marn-bench", help="generated data and outputs")
    parser.add_argument("--encoder-only", action="store_true", help="time tf.train.Example encoding only")
    parser.add_argument("--json", help="also write the figures to this JSON file (what benchmarks/run_all.py reads)")
    args = parser.parse_args()
    if args.encoder_only:
        bench_encoder()
    else:
        bench_pipeline(args)


if __name__ == "__main__":
    main()
