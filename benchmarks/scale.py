"""Scale-out benchmark: one `marn train` process against a local parameter-server cluster on the same data.

    python benchmarks/scale.py                       # single process, then chief + 2 workers + 2 ps
    python benchmarks/scale.py --steps 200 --workers 2 --ps 2 --batch-size 1024
    python benchmarks/scale.py --catalog-sizes 100000 1000000 --skip-training    # memory against catalog size
    python benchmarks/scale.py --content-in-examples   # also one process on examples carrying the item content

Both runs train MARN on the embedded dataset (generated and preprocessed once into /tmp/marn-bench/, or
`--data DIR --config CFG`) for the same number of steps of `--batch-size` examples (per worker under
parameter servers, whose steps run asynchronously), with validation on `--validation-steps` batches.

Printed per run: examples/s of training (the trainer's own figure: steps x batch over the time in
`model.fit`, validation included), the wall time with start-up, and the peak resident memory of every process
(sampled from /proc every 0.2 s), named by its TF_CONFIG task; for the cluster, the bytes of variables each
parameter server holds (from the chief's placement log). On one machine the cluster's processes share its
cores, so the figure says what the engine costs here, not what it gains on separate hosts.

`--content-in-examples` also preprocesses the same raw data with `pipeline.item_content: examples` (once, into
`<data>-content-in-examples`) and trains one process on it: the cost of carrying the content in every example
(TFRecord bytes per example, examples/s, memory) against the in-model table.

`--catalog-sizes N ...` builds the MARN network (no training) of the same config for catalogs of N items, all
with their own ID embedding, each size and mode in a fresh process: in one process in table mode (the item
table and the embeddings are weights of the model), in one process in examples mode (`pipeline.item_content:
examples`: the content comes with the examples, only the ID embeddings grow with the catalog), and under
ParameterServerStrategy with `--ps` in-process parameter servers (table mode). It prints the MB of variables each process holds (and the one process's peak resident
memory), and the MB of variables each export mode's SavedModel would hold: the regular export (the item
tower precomputed over the catalog, beside the live tower for `item_representations`) and `--item-store`
(no item tower, table or vocabulary). Optimizer slots come on top once training starts (Adam: two per
trainable weight).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from embedded_data import ensure_embedded_data  # benchmarks/, beside this script
from process_memory import process_tree
from record import write_record

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = "/tmp/marn-bench/train-data"
DEFAULT_RAW = "/tmp/marn-bench/train-raw"


def task_of(pid: int) -> str | None:
    """"chief-0", "worker-1", "ps-0" ... from the process's TF_CONFIG; "single" for a `marn train` without one."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().split(b"\0")
        if b"marn_tf.cli" not in command and not any(c.endswith(b"/marn") for c in command):
            return None
        with open(f"/proc/{pid}/environ", "rb") as f:
            environment = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
    except OSError:
        return None
    if b"TF_CONFIG" not in environment:
        return "single"
    task = json.loads(environment[b"TF_CONFIG"]).get("task", {})
    return f"{task.get('type')}-{task.get('index')}"


def run_measured(command: list[str], output: str) -> dict:
    """Runs `command`, sampling the peak resident memory of each `marn train` process under it."""
    start = time.perf_counter()
    log = open(os.path.join(output, "benchmark.log"), "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    names: dict[int, str] = {}
    peaks: dict[str, float] = {}
    while process.poll() is None:
        for pid, rss in process_tree(process.pid).items():
            if pid not in names:
                name = task_of(pid)
                if name is None:
                    continue
                names[pid] = name
            peaks[names[pid]] = max(peaks.get(names[pid], 0.0), rss / 2**20)
        time.sleep(0.2)
    log.close()
    if process.returncode != 0:
        with open(log.name) as f:
            sys.exit(f"failed ({process.returncode}): {' '.join(command)}\n{f.read()[-3000:]}")
    with open(os.path.join(output, "training_summary.json")) as f:
        summary = json.load(f)
    return {"wall_s": round(time.perf_counter() - start, 1), "examples_per_second": summary["examples_per_second"],
            "steps": summary["steps"], "best_val_auc": summary["best_val_auc"],
            "peak_memory_mb": {k: round(v) for k, v in sorted(peaks.items())}}


def ps_variable_bytes(chief_log: str) -> dict[str, float]:
    """MB of variables per parameter server, from the chief's placement line."""
    with open(chief_log) as f:
        line = next((l for l in f if "parameter servers hold" in l), "")
    return {f"ps-{task}": float(mb) for task, mb in re.findall(r"/job:ps/replica:0/task:(\d+)/device:CPU:0 \d+ \(([\d.]+) MB\)",
                                                                 line)}


CATALOG_MODES = ("table", "examples", "ps")


def catalog_child(config_path: str, data: str, items: int, mode: str, ps: int) -> dict:
    """In this process: the network for a catalog of `items` items in `mode` (CATALOG_MODES); MB of variables per
    device."""
    import collections
    import resource
    import socket

    import marn_tf  # noqa: F401  (Keras 2 before TensorFlow)
    import tensorflow as tf

    from marn_tf.config import Config
    from marn_tf.models.network import build_core
    from marn_tf.pipelines.example_schema import content_features
    from marn_tf.schema import ITEM_VOCABULARY, Schema

    schema = Schema.load(data).without_content_features()
    schema.vocabularies[ITEM_VOCABULARY].size = items
    schema.item_table.num_with_id_embedding = items
    config = Config.load(config_path, ["runtime.strategy=default"])
    if mode == "examples":  # the schema `pipeline.item_content: examples` writes
        schema.features += content_features(config)
    ps = ps if mode == "ps" else 0
    if ps:
        sockets = [socket.socket() for _ in range(1 + ps)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in sockets]
        for s in sockets:
            s.close()
        spec = tf.train.ClusterSpec({"worker": [f"127.0.0.1:{ports[0]}"],
                                     "ps": [f"127.0.0.1:{p}" for p in ports[1:]]})
        threads = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=4)  # servers of one process share its pool
        _servers = [tf.distribute.Server(spec, job_name=job, task_index=i, config=threads, start=True)
                    for job, n in (("worker", 1), ("ps", ps)) for i in range(n)]
        strategy = tf.distribute.ParameterServerStrategy(
            tf.distribute.cluster_resolver.SimpleClusterResolver(spec, rpc_layer="grpc"),
            variable_partitioner=tf.distribute.experimental.partitioners.MinSizePartitioner(
                min_shard_bytes=config.runtime.min_shard_bytes, max_shards=ps))
    else:
        strategy = tf.distribute.get_strategy()
    with strategy.scope():
        core = build_core(schema, config.model)
    held = collections.Counter()
    for v in core.variables:
        device = v.device if ps else "the process"
        held[device] += v.shape.num_elements() * v.dtype.size / 2**20
    result = {"variables_mb": {k: round(v, 1) for k, v in sorted(held.items())},
              "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if mode == "table":  # what each export mode's SavedModel holds as variables (the same from any training mode)
        from marn_tf.layers.precomputed_item_tower import PrecomputedItemTower

        def mb(variables) -> float:
            return sum(v.shape.num_elements() * v.dtype.size for v in variables) / 2**20

        tower = core.get_layer("item_tower")
        catalog = PrecomputedItemTower.freeze(tower)  # the regular export keeps the live tower too (item_representations)
        result["export_variables_mb"] = {"item ids (regular)": round(mb(core.variables) + mb(catalog.variables), 1),
                                         "item store": round(mb(core.variables) - mb(tower.variables), 1)}
    return result


def catalog_sizes(args) -> dict:
    results = {}
    names = {"table": "one process, item table", "examples": "one process, content in the examples",
             "ps": f"{args.ps} ps, item table"}
    for items in args.catalog_sizes:
        for mode in CATALOG_MODES:
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--catalog-child", str(items), mode,
                                   "--config", args.config, "--data", args.data, "--ps", str(args.ps)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"catalog of {items:,} items, {names[mode]}: failed\n{done.stderr[-3000:]}")
            results[f"{items:,} items, {names[mode]}"] = json.loads(done.stdout.strip().splitlines()[-1])
    print("\n| catalog, mode | MB of variables per process | peak memory of the process (MB) | "
          "SavedModel variables (MB): regular / --item-store |")
    print("|---|---|---:|---|")
    for name, r in results.items():
        held = ", ".join(f"{k.replace('/replica:0', '').replace('/device:CPU:0', '')} {v}"
                         for k, v in r["variables_mb"].items())
        export = " / ".join(str(v) for v in r.get("export_variables_mb", {}).values()) or "-"
        print(f"| {name} | {held} | {r['peak_memory_mb']} | {export} |")
    return results


def content_in_examples_data(args) -> str:
    """The same raw data preprocessed with `pipeline.item_content: examples` (once; an existing output is reused)."""
    data = args.data.rstrip("/") + "-content-in-examples"
    if not os.path.exists(os.path.join(data, "schema.json")):
        from marn_tf.config import Config
        from marn_tf.pipelines import preprocess

        started = time.perf_counter()
        preprocess.run(Config.load(args.config, ["pipeline.item_content=examples"]), data, num_workers=2)
        print(f"preprocessed with the item content in the examples into {data} in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    return data


def bytes_per_example(data: str, split: str = "train") -> float:
    """Compressed TFRecord bytes per example of a split."""
    with open(os.path.join(data, "report.json")) as f:  # the pipeline's counts (older schemas lack split_examples)
        examples = json.load(f)["splits"][split]["examples"]
    directory = os.path.join(data, split)
    return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)) / examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="a `marn preprocess` output (default: %(default)s)")
    parser.add_argument("--config", help="its YAML config (default: the embedded data's)")
    parser.add_argument("--steps", type=int, default=100, help="training steps in all (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--validation-steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ps", type=int, default=2)
    parser.add_argument("--output", default="/tmp/marn-bench/scale",
                        help="a new directory for this run's training directories is made under it")
    parser.add_argument("--catalog-sizes", type=int, nargs="*", default=[],
                        help="also measure the variables held for catalogs of these numbers of items")
    parser.add_argument("--skip-training", action="store_true", help="only the --catalog-sizes figures")
    parser.add_argument("--content-in-examples", action="store_true",
                        help="also train one process on the data preprocessed with pipeline.item_content: examples")
    parser.add_argument("--json", help="also write a record of the figures to this JSON file (benchmarks/record.py)")
    parser.add_argument("--catalog-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.catalog_child:
        items, mode = args.catalog_child
        print(json.dumps(catalog_child(args.config, args.data, int(items), mode, args.ps)))
        return
    args.config = ensure_embedded_data(args.data, DEFAULT_RAW, args.config)
    results = {}
    if args.catalog_sizes:
        results["catalog"] = catalog_sizes(args)
    if args.skip_training:
        if args.json:
            write_record(args.json, "scale", results)
        return
    os.makedirs(args.output, exist_ok=True)
    output = tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=args.output)  # never reused or deleted
    settings = ["--set", f"train.steps_per_epoch={args.steps}", "--set", "train.epochs=1",
                "--set", f"train.batch_size={args.batch_size}", "--set", f"train.validation_steps={args.validation_steps}",
                "--set", "train.early_stopping_patience=0"]
    train = ["--config", args.config, "--data", args.data]
    single = os.path.join(output, "single")
    os.makedirs(single)
    results["single process"] = run_measured(
        [sys.executable, "-m", "marn_tf.cli", "train", *train, "--output", single, *settings, "--no-progress"], single)
    results["single process"]["tfrecord_bytes_per_example"] = round(bytes_per_example(args.data))
    if args.content_in_examples:
        data = content_in_examples_data(args)
        directory = os.path.join(output, "single_content_in_examples")
        os.makedirs(directory)
        name = "single process, content in the examples"
        results[name] = run_measured(
            [sys.executable, "-m", "marn_tf.cli", "train", "--config", args.config, "--data", data, "--output", directory,
             *settings, "--set", "pipeline.item_content=examples", "--no-progress"], directory)
        results[name]["tfrecord_bytes_per_example"] = round(bytes_per_example(data))
    cluster = os.path.join(output, "parameter_servers")
    os.makedirs(cluster)
    results[f"chief + {args.workers} workers + {args.ps} ps"] = run_measured(
        [sys.executable, os.path.join(REPO, "scripts", "multi_worker_local.py"), "--workers", str(args.workers),
         "--ps", str(args.ps), "--", *train, "--output", cluster, *settings], cluster)
    results[f"chief + {args.workers} workers + {args.ps} ps"]["ps_variables_mb"] = ps_variable_bytes(
        os.path.join(cluster, "chief-0.log"))

    print(f"\nruns in {output}")
    print(f"MARN, {args.steps} steps of {args.batch_size} examples, validation {args.validation_steps} batches")
    print("| run | examples/s | wall s | peak memory per process (MB) | variables per ps (MB) | TFRecord bytes "
          "per example |")
    print("|---|---:|---:|---|---|---:|")
    for name, r in results.items():
        if name == "catalog":
            continue
        memory = ", ".join(f"{k} {v}" for k, v in r["peak_memory_mb"].items())
        held = ", ".join(f"{k} {v}" for k, v in r.get("ps_variables_mb", {}).items()) or "-"
        print(f"| {name} | {r['examples_per_second']:,.0f} | {r['wall_s']} | {memory} | {held} | "
              f"{r.get('tfrecord_bytes_per_example', '-')} |")
    if args.json:
        write_record(args.json, "scale", results)


if __name__ == "__main__":
    main()
