"""Every benchmark in one command, and one table with the targets beside the measured figures.

    python benchmarks/run_all.py            # the documented sizes: 1M pipeline events, 20 timed training steps,
                                            # 3 x 300 serving calls per model (4 minutes on 2 cores once the
                                            # input data is generated; generating it adds a few minutes)
    python benchmarks/run_all.py --quick    # 250k events, 10 steps, 1 x 200 calls

It runs `benchmarks/pipeline.py`, `benchmarks/train.py` (speed rows: input, deepctr DIN and DIEN, MARN at
width 32) and `benchmarks/serving.py` as separate processes with `--json`, each printing its own details
first, then prints the table and writes it to `<work>/results.md` (figures in `<work>/results.json`).
Serving needs a trained run: `--run DIR --data DIR` (e.g. `--run runs/demo/model --data
runs/demo/preprocessed` after `marn demo`), else a short MARN run is trained on the training benchmark's
data (latency does not depend on how long it trained).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = "/tmp/marn-bench/all"
TRAIN_DATA = "/tmp/marn-bench/train-data"  # benchmarks/train.py's default embedded dataset
TRAIN_CONFIG = "/tmp/marn-bench/train-raw/config.yaml"


def run_benchmark(script: str, arguments: list[str], json_path: str) -> dict:
    command = [sys.executable, os.path.join(HERE, script), *arguments, "--json", json_path]
    print(f"\n$ {' '.join(command)}", flush=True)
    start = time.time()
    subprocess.run(command, check=True, cwd=REPO)
    print(f"({script}: {time.time() - start:.0f} s)", flush=True)
    with open(json_path) as f:
        return json.load(f)


def serving_run(args) -> tuple[str, str]:
    """(run, data) for the serving benchmark: the one given, else a short MARN run on the training data."""
    if args.run:
        return args.run, args.data
    run = os.path.join(args.work, "serving-run")
    if not os.path.exists(os.path.join(run, "best")):
        command = [sys.executable, "-m", "marn_tf.cli", "train", "--config", TRAIN_CONFIG, "--data", TRAIN_DATA,
                   "--output", run, "--no-progress", "--set", "train.steps_per_epoch=20", "--set", "train.epochs=1",
                   "--set", "train.validation_steps=4"]
        print(f"\n$ {' '.join(command)}", flush=True)
        subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return run, TRAIN_DATA


def rows(pipeline: dict, training: dict, serving: dict) -> list[tuple]:
    """(benchmark, figure, measured, target, met: True/False/None)."""
    best = max(pipeline["runs"], key=lambda r: r["events_per_s"])
    out = [(f"pipeline, {best['events']:,} events, {best['workers']} workers", "events/s, end to end",
            f"{best['events_per_s']:,.0f}", f">= {pipeline['target_events_per_s']:,}",
            best["events_per_s"] >= pipeline["target_events_per_s"]),
           ("", "peak memory: runner / largest worker", f"{best['peak_runner_mb']:,.0f} / "
            f"{best['peak_worker_mb']:,.0f} MB", "", None)]
    models = training["models"]
    marn = models.get("MARN (width 32)", {})
    ratio = lambda key, target, label: (  # noqa: E731
        "", label, "failed" if training[key] is None else f"{training[key]:.2f}x", f">= {target}x",
        None if training[key] is None else training[key] >= target)
    out += [(f"training, batch {training['batch_size']}", "MARN examples/s (width 32)",
             f"{marn.get('examples_per_second', float('nan')):,.0f}", "", None),
            ratio("marn_over_dien", 1.0, "MARN / deepctr DIEN"),
            ratio("marn_over_din", 0.5, "MARN / deepctr DIN"),
            ratio("input_over_trainer", 5.0, "input pipeline / MARN trainer")]
    marn_serving, peer = serving["median"]["MARN"], serving["median"]["deepctr DIN (peer)"]
    p99, peer_p99 = marn_serving["ranking"]["p99_ms"], peer["ranking"]["p99_ms"]
    out += [("serving (serving_default, fresh process)", "1 user x 100 candidates, p99", f"{p99:.2f} ms",
             "<= 10 ms", p99 <= 10),
            ("", "MARN / DIN peer, ranking p99", f"{p99 / peer_p99:.2f}x", "<= 1.0x", p99 <= peer_p99),
            ("", "batch 512 p99, MARN / peer", f"{marn_serving['batch']['p99_ms']:.2f} / "
             f"{peer['batch']['p99_ms']:.2f} ms", "", None)]
    return out


def render(table: list[tuple], device: str) -> str:
    lines = [f"{device}", "", "| benchmark | figure | measured | target | met |", "|---|---|---:|---:|---|"]
    for bench, figure, measured, target, met in table:
        lines.append(f"| {bench} | {figure} | {measured} | {target or '–'} | "
                     f"{'–' if met is None else ('yes' if met else 'NO')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a first look, not the documented figures")
    parser.add_argument("--run", help="a `marn train` run for the serving benchmark (with --data)")
    parser.add_argument("--data", help="the `marn preprocess` output of --run")
    parser.add_argument("--work", default=WORK, help="JSON results and the table (default %(default)s)")
    args = parser.parse_args()
    if bool(args.run) != bool(args.data):
        parser.error("give --run and --data together")
    os.makedirs(args.work, exist_ok=True)
    events = 250_000 if args.quick else 1_000_000
    started = time.time()
    pipeline = run_benchmark("pipeline.py", ["--events", str(events), "--workers", "2"],
                             os.path.join(args.work, "pipeline.json"))
    training = run_benchmark("train.py", ["--only", "input pipeline", "deepctr DIN", "DIEN", "MARN (width 32",
                                          "--steps", "10" if args.quick else "20"],
                             os.path.join(args.work, "train.json"))
    run, data = serving_run(args)
    serving = run_benchmark("serving.py", ["--run", run, "--data", data, "--repeats", "1" if args.quick else "3",
                                           "--calls", "200" if args.quick else "300"],
                            os.path.join(args.work, "serving.json"))
    table = rows(pipeline, training, serving)
    text = render(table, f"{training['device']}; {'--quick' if args.quick else 'documented sizes'}; "
                         f"{(time.time() - started) / 60:.0f} minutes in all")
    print("\n" + text)
    with open(os.path.join(args.work, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.work, "results.json"), "w") as f:
        json.dump({"pipeline": pipeline, "training": training, "serving": serving,
                   "table": [dict(zip(("benchmark", "figure", "measured", "target", "met"), r)) for r in table]},
                  f, indent=2)


if __name__ == "__main__":
    main()
