"""Every speed benchmark in one command, one table with the targets beside the measured figures, and one record.

    python benchmarks/run_all.py --json benchmarks/results/speed-$(date +%F).json
                                            # the documented sizes: 1M pipeline events, 20 timed training steps,
                                            # 300 serving calls per shape, each setting 3 times, interleaved
    python benchmarks/run_all.py --quick    # 250k events, 10 steps, 200 calls, once each: a first look

It runs `benchmarks/pipeline.py`, `benchmarks/train.py` (speed rows: input, deepctr DIN and DIEN, MARN at
width 32) and `benchmarks/serving.py` as separate processes with `--json`, each printing its own details
first, then prints the table and writes it to `<work>/results.md`. Every timing is the median of interleaved
repeats with the lowest and highest run. The record (`benchmarks/record.py`, kind "speed") holds the three
benchmarks' records; it goes to `--json` (default `<work>/results.json`), and one under `benchmarks/results/`
made at the documented sizes on a quiet machine feeds the speed tables `benchmarks/render.py` writes.
Serving needs a trained run: `--run DIR --data DIR` (e.g. `--run runs/demo/model --data
runs/demo/preprocessed` after `marn demo`), else a short MARN run is trained on the training benchmark's
data (latency does not depend on how long it trained).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from record import command_line, median_range, read_record, write_record  # benchmarks/, beside this script

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = "/tmp/marn-bench/all"
TRAIN_DATA = "/tmp/marn-bench/train-data"  # benchmarks/train.py's default embedded dataset
TRAIN_CONFIG = "/tmp/marn-bench/train-raw/config.yaml"


def run_benchmark(script: str, arguments: list[str], json_path: str) -> dict:
    """Runs one benchmark with `--json` and returns its record."""
    command = [sys.executable, os.path.join(HERE, script), *arguments, "--json", json_path]
    print(f"\n$ {' '.join(command)}", flush=True)
    start = time.time()
    subprocess.run(command, check=True, cwd=REPO)
    print(f"({script}: {time.time() - start:.0f} s)", flush=True)
    return read_record(json_path)


def serving_run(args) -> tuple[str, str]:
    """(run, data) for the serving benchmark: the one given, else a short MARN run on the training data, trained
    now into a folder of its own (a run of earlier code may not fit the network this code builds)."""
    if args.run:
        return args.run, args.data
    run = os.path.join(args.work, "serving-run", time.strftime("%Y%m%d-%H%M%S"))
    command = [sys.executable, "-m", "marn_tf.cli", "train", "--config", TRAIN_CONFIG, "--data", TRAIN_DATA,
               "--output", run, "--no-progress", "--set", "train.steps_per_epoch=20", "--set", "train.epochs=1",
               "--set", "train.validation_steps=4"]
    print(f"\n$ {' '.join(command)}", flush=True)
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return run, TRAIN_DATA


def spread(figure: dict | None, form: str = "{:,.0f}", unit: str = "") -> str:
    """`median [lowest, highest]` of a `median_range` figure ("failed" when nothing was measured)."""
    if not figure or figure["median"] is None:
        return "failed"
    middle = form.format(figure["median"])
    if len(figure["runs"]) < 2:
        return middle + unit
    return f"{middle} [{form.format(figure['low'])}, {form.format(figure['high'])}]{unit}"


def meets(figure: dict | None, target: float, at_least: bool = True) -> bool | None:
    """Whether the median meets the target (None when nothing was measured)."""
    if not figure or figure["median"] is None:
        return None
    return figure["median"] >= target if at_least else figure["median"] <= target


def serving_ratio(serving: dict) -> dict:
    """MARN's ranking p99 over the peer's, per repeat (the two ran back to back), as a median and range."""
    runs = serving["runs"]
    return median_range(m["ranking"]["p99_ms"] / p["ranking"]["p99_ms"]
                        for m, p in zip(runs["MARN"], runs["deepctr DIN (peer)"]))


def rows(pipeline: dict, training: dict, serving: dict) -> list[tuple]:
    """(benchmark, figure, measured, target, met: True/False/None) from the three benchmarks' figures."""
    best = pipeline["best"]
    target = pipeline["target_events_per_s"]
    out = [(f"pipeline, {best['events']:,} events, {best['workers']} workers", "events/s, end to end",
            spread(best["events_per_s"]), f">= {target:,}", meets(best["events_per_s"], target)),
           ("", "peak memory: runner / largest worker", f"{best['peak_runner_mb']['median']:,.0f} / "
            f"{best['peak_worker_mb']['median']:,.0f} MB", "", None)]
    marn = training["models"].get("MARN (width 32)", {})
    out += [(f"training, batch {training['batch_size']}", "MARN examples/s (width 32)",
             spread(marn.get("examples_per_second")), "", None)]
    for key, target, label in (("marn_over_dien", 1.0, "MARN / deepctr DIEN"), ("marn_over_din", 0.5,
                                                                               "MARN / deepctr DIN"),
                               ("input_over_trainer", 5.0, "input pipeline / MARN trainer")):
        out.append(("", label, spread(training[key], "{:.2f}x"), f">= {target}x", meets(training[key], target)))
    marn_serving, peer = serving["median"]["MARN"], serving["median"]["deepctr DIN (peer)"]
    p99, ratio = marn_serving["ranking"]["p99_ms"], serving_ratio(serving)
    out += [("serving (serving_default, fresh process)", "1 user x 100 candidates, p99",
             spread(p99, "{:.2f}", " ms"), "<= 10 ms", meets(p99, 10, at_least=False)),
            ("", "MARN / DIN peer, ranking p99", spread(ratio, "{:.2f}x"), "<= 1.0x", meets(ratio, 1.0, False)),
            ("", "batch 512 p99, MARN / peer", f"{marn_serving['batch']['p99_ms']['median']:.2f} / "
             f"{peer['batch']['p99_ms']['median']:.2f} ms", "", None)]
    return out


def markdown(table: list[tuple]) -> str:
    lines = ["| benchmark | figure | measured: median [lowest, highest] | target | met |", "|---|---|---:|---:|---|"]
    for bench, figure, measured, target, met in table:
        lines.append(f"| {bench} | {figure} | {measured} | {target or '–'} | "
                     f"{'–' if met is None else ('yes' if met else 'NO')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a first look, not the documented figures")
    parser.add_argument("--run", help="a `marn train` run for the serving benchmark (with --data)")
    parser.add_argument("--data", help="the `marn preprocess` output of --run")
    parser.add_argument("--work", default=WORK, help="the benchmarks' own records and the table (default %(default)s)")
    parser.add_argument("--json", help="the record of all three (default: <work>/results.json)")
    args = parser.parse_args()
    if bool(args.run) != bool(args.data):
        parser.error("give --run and --data together")
    os.makedirs(args.work, exist_ok=True)
    repeats = "1" if args.quick else "3"
    started = time.time()
    pipeline = run_benchmark("pipeline.py", ["--events", "250000" if args.quick else "1000000", "--workers", "2",
                                             "--repeats", repeats, "--warmup", "0" if args.quick else "1"],
                             os.path.join(args.work, "pipeline.json"))
    training = run_benchmark("train.py", ["--only", "input pipeline", "deepctr DIN", "DIEN", "MARN (width 32",
                                          "--steps", "10" if args.quick else "20", "--repeats", repeats],
                             os.path.join(args.work, "train.json"))
    run, data = serving_run(args)
    serving = run_benchmark("serving.py", ["--run", run, "--data", data, "--repeats", repeats,
                                           "--calls", "200" if args.quick else "300"],
                            os.path.join(args.work, "serving.json"))
    minutes = (time.time() - started) / 60
    text = (f"{training['figures']['device']}; {'--quick' if args.quick else 'documented sizes'}; "
            f"{minutes:.0f} minutes in all\n\n"
            + markdown(rows(pipeline["figures"], training["figures"], serving["figures"])))
    print(f"\n{command_line()}\n{text}")
    with open(os.path.join(args.work, "results.md"), "w") as f:
        f.write(text + "\n")
    path = args.json or os.path.join(args.work, "results.json")
    write_record(path, "speed", {"quick": args.quick, "minutes": round(minutes, 1), "pipeline": pipeline,
                                 "training": training, "serving": serving})
    print(f"record: {path}")


if __name__ == "__main__":
    main()
