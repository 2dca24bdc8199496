"""Training benchmark: examples/s and peak memory of MARN, its ablation variants and deepctr's DIN and DIEN,
side by side on the same data and batch size. (The ablation ladder's quality over seeds is
`benchmarks/quality.py`.)

    python benchmarks/train.py                         # speed: every model at the peer width (32) and MARN at 256
    python benchmarks/train.py --xla                   # adds MARN with jit_compile (items not deduplicated)

Data: `--data DIR --config CFG` (a `marn preprocess` output with sequence length 50 and its config), or by
default the embedded dataset generated and preprocessed into /tmp/marn-bench/. Every model runs in its own
process (peak memory = that process's max RSS) on the same batches held in memory, so the figure is the
trainer's consumption; the input pipeline (parse + lookup, what training reads through) is measured on
its own, and must deliver at least 5x what the trainer consumes. Each process runs `--warmup` untimed steps
before its `--steps` timed ones. The models' processes take turns `--repeats` times (identical runs differ by
tens of percent on a shared machine, and its speed drifts between minutes): every figure is the median of a
model's runs with the lowest and highest, and each ratio the median of its per-repeat ratios. The device (CPU
model or GPU name) is printed with the figures; `--json PATH` writes them as a record (`benchmarks/record.py`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import marn_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from embedded_data import ensure_embedded_data  # benchmarks/, beside this script
from record import command_line, median_range, write_record

DEFAULT_DATA = "/tmp/marn-bench/train-data"
DEFAULT_RAW = "/tmp/marn-bench/train-raw"
LADDER = ["din", "concat", "man", "maan", "marn"]


# -- data --------------------------------------------------------------------------------------------------
def ensure_data(args) -> None:
    """The embedded dataset, generated and preprocessed once, unless --data/--config name other data."""
    args.config = ensure_embedded_data(args.data, DEFAULT_RAW, args.config)


def config_for(args, overrides: list[str]):
    from marn_tf.config import Config

    return Config.load(args.config, overrides)


def device_name() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)} x{len(gpus)}"
    model = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU: {model}, {os.cpu_count()} cores"


def materialize(data: str, schema, network, batch_size: int, batches: int):
    """`batches` indexed training batches as numpy arrays (the same for every model)."""
    from marn_tf.data.input import make_dataset
    from marn_tf.training.training_run import indexed

    ds = indexed(make_dataset(data, schema, "train", batch_size, shuffle=False, deterministic=True), network)
    return [({k: v.numpy() for k, v in f.items()}, y.numpy()) for f, y in ds.take(batches)]


def in_memory(batches):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(batches_to_columns(batches)).unbatch().batch(
        len(batches[0][1]), drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE)


def batches_to_columns(batches):
    import numpy as np

    features = {k: np.stack([b[0][k] for b in batches]) for k in batches[0][0]}
    return features, np.stack([b[1] for b in batches])


# -- children: one model each ------------------------------------------------------------------------------
def run_marn(args) -> dict:
    from marn_tf.training.task import CtrTask

    variant, width = args.child.split(":")[1], int(args.width)
    overrides = [f"model.variant={variant}", f"model.units={width}", f"model.common_units={width}",
                 f"model.gru_units={width}", f"model.id_embedding_dim={min(width, 32)}"]
    if args.xla:
        overrides += ["runtime.xla=true", "model.deduplicate_items=false", "model.deduplicate_sequences=false"]
    task = CtrTask(config_for(args, overrides), args.data)
    network = task.build_network()
    model = task.build_model(network)  # the model and optimizers `marn train` builds (XLA from runtime.xla)
    data = in_memory(materialize(args.data, task.schema, network, args.batch_size, args.batches))
    model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
    elapsed = time.perf_counter() - start
    return {"examples_per_second": args.steps * args.batch_size / elapsed, "parameters": model.network.count_params()}


def deepctr_inputs(network, batches):
    """Our batches as deepctr's inputs: user, candidate item and category, behaviour items and categories."""
    import numpy as np

    category = network.item_tower.table["category_id"].numpy()
    features, labels = batches_to_columns(batches)
    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in features.items()}
    x = {"user": flat["user_id"], "item_id": flat["item_id"], "cate_id": category[flat["item_id"]],
         "hist_item_id": flat["hist_item_id"], "hist_cate_id": category[flat["hist_item_id"]],
         "seq_length": flat["hist_length"]}
    return x, labels.reshape(-1).astype(np.float32)


def deepctr_cache(args) -> str:
    """Writes deepctr's inputs (from our batches) to an .npz once; DIEN's graph mode cannot iterate tf.data."""
    path = os.path.join(os.path.dirname(os.path.abspath(args.data)),
                        f"deepctr-inputs-{os.path.basename(os.path.abspath(args.data))}-{args.batch_size}x{args.batches}.npz")
    if os.path.exists(path):
        return path
    import numpy as np

    from marn_tf.schema import Schema
    from marn_tf.training.training_run import load_network

    schema = Schema.load(args.data)
    network = load_network(config_for(args, []), schema, args.data)
    x, y = deepctr_inputs(network, materialize(args.data, schema, network, args.batch_size, args.batches))
    np.savez(path, label=y, **x)
    return path


def deepctr_columns(schema, dim: int) -> list:
    """deepctr's feature columns for DIN/DIEN: user, candidate item and category, behaviour items and categories."""
    from deepctr.feature_column import SparseFeat, VarLenSparseFeat

    length = schema.sequence_length
    items = schema.vocabularies["item_id"].input_dim
    categories = schema.vocabularies["category_id"].input_dim
    return [SparseFeat("user", schema.vocabularies["user_id"].input_dim, embedding_dim=dim),
            SparseFeat("item_id", items, embedding_dim=dim), SparseFeat("cate_id", categories, embedding_dim=dim),
            VarLenSparseFeat(SparseFeat("hist_item_id", items, embedding_dim=dim, embedding_name="item_id"),
                             maxlen=length, length_name="seq_length"),
            VarLenSparseFeat(SparseFeat("hist_cate_id", categories, embedding_dim=dim, embedding_name="cate_id"),
                             maxlen=length, length_name="seq_length")]


def run_deepctr(args) -> dict:
    import numpy as np

    name = args.child.split(":")[1]
    cache = np.load(deepctr_cache(args))  # eager, before DIEN switches to graph mode
    x, y = {k: cache[k] for k in cache.files if k != "label"}, cache["label"]
    import tensorflow as tf

    if name == "dien":  # deepctr's DIEN needs graph mode and names that TensorFlow 2.21 moved to other modules
        from tensorflow.python.ops import array_ops, array_ops_stack, control_flow_ops
        from tensorflow.python.util import nest

        tf.compat.v1.disable_eager_execution()
        array_ops.stack, array_ops.unstack = array_ops_stack.stack, array_ops_stack.unstack
        control_flow_ops.Assert, control_flow_ops.cond = tf.compat.v1.Assert, tf.compat.v1.cond
        control_flow_ops.while_loop = tf.compat.v1.while_loop
        nest.is_sequence = nest.is_nested
    from deepctr.models import DIEN, DIN

    from marn_tf.schema import Schema

    columns = deepctr_columns(Schema.load(args.data), int(args.width))
    if name == "din":
        model = DIN(columns, ["item_id", "cate_id"])
        model.compile("adam", "binary_crossentropy", jit_compile=args.xla)
    else:
        model = DIEN(columns, ["item_id", "cate_id"], gru_type="AUGRU", use_negsampling=False)
        model.compile("adam", "binary_crossentropy")
    n = args.batch_size * args.warmup
    model.fit({k: v[:n] for k, v in x.items()}, y[:n], batch_size=args.batch_size, epochs=1, verbose=0)
    repeats = -(-args.steps // args.batches)
    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=repeats, verbose=0)
    elapsed = time.perf_counter() - start
    return {"examples_per_second": repeats * len(y) / elapsed, "parameters": model.count_params()}


def run_input(args) -> dict:
    from marn_tf.data.input import make_dataset
    from marn_tf.schema import Schema
    from marn_tf.training.training_run import indexed, load_network

    config = config_for(args, [])
    schema = Schema.load(args.data)
    network = load_network(config, schema, args.data)
    ds = iter(indexed(make_dataset(args.data, schema, "train", args.batch_size, repeat=True), network))
    for _ in range(5):
        next(ds)
    batches = 100
    start = time.perf_counter()
    for _ in range(batches):
        next(ds)
    return {"examples_per_second": batches * args.batch_size / (time.perf_counter() - start)}


def child_main(args) -> None:
    kind = args.child.split(":")[0]
    result = {"marn": run_marn, "deepctr": run_deepctr, "input": run_input}[kind](args)
    result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["device"] = device_name()
    print("RESULT " + json.dumps(result), flush=True)


# -- parent ------------------------------------------------------------------------------------------------
def measure(args, child: str, width: int, xla: bool = False) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", child, "--data", args.data, "--config",
               args.config, "--width", str(width),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--batches", str(args.batches)] + (["--xla"] if xla else [])
    done = subprocess.run(command, capture_output=True, text=True)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    if done.returncode or line is None:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(line[len("RESULT "):])


def summarize(runs: list[dict]) -> dict:
    """One model's repeats: median and range of examples/s and peak memory (over the runs that finished)."""
    done = [r for r in runs if "error" not in r]
    errors = [r["error"] for r in runs if "error" in r]
    if not done:
        return {"error": errors[-1], "errors": errors}
    return {"examples_per_second": median_range(r["examples_per_second"] for r in done),
            "peak_memory_mb": median_range(r["peak_memory_mb"] for r in done),
            "parameters": done[0].get("parameters", 0), "errors": errors}


def ratio(numerators: list[dict], denominators: list[dict]) -> dict:
    """Median and range of the per-repeat ratio of examples/s (a repeat's two runs ran minutes apart at most)."""
    return median_range(a["examples_per_second"] / b["examples_per_second"] for a, b in zip(numerators, denominators)
                        if "error" not in a and "error" not in b)


def speed(args) -> dict:
    rows = [("input pipeline (parse + lookup)", "input", args.width, False)]
    rows += [(f"deepctr DIN (emb {args.width})", "deepctr:din", args.width, False),
             (f"deepctr DIEN, AUGRU (emb {args.width})", "deepctr:dien", args.width, False)]
    rows += [(f"{'MARN' if v == 'marn' else v} (width {args.width})", f"marn:{v}", args.width, False) for v in LADDER]
    if args.xla:
        rows += [(f"MARN XLA, no dedup (width {args.width})", "marn:marn", args.width, True),
                 (f"deepctr DIN XLA (emb {args.width})", "deepctr:din", args.width, True)]
    rows += [(f"MARN (paper width {args.paper_width})", "marn:marn", args.paper_width, False)]
    if args.only:
        rows = [r for r in rows if any(o.lower() in r[0].lower() for o in args.only)]
    runs: dict[str, list[dict]] = {label: [] for label, *_ in rows}
    for repeat in range(args.repeats):  # interleaved: each repeat measures every model once, so drift hits all alike
        for label, child, width, xla in rows:
            print(f"repeat {repeat + 1}/{args.repeats}: measuring {label} ...", flush=True)
            runs[label].append(measure(args, child, width, xla))
            print(f"  {runs[label][-1]}", flush=True)
    models = {label: summarize(r) for label, r in runs.items()}
    device = next((r["device"] for rs in runs.values() for r in rs if "device" in r), "?")
    print(f"\n{command_line()}\n{device}; batch {args.batch_size}, {args.steps} timed steps after {args.warmup} "
          f"warm-up steps; median [lowest, highest] of {args.repeats} interleaved runs per model\n")
    print("| model | examples/s | peak memory (MB) | parameters |\n|---|---:|---:|---:|")
    for label, m in models.items():
        if "error" in m:
            print(f"| {label} | failed: {m['error']} | | |")
        else:
            e = m["examples_per_second"]
            print(f"| {label} | {e['median']:,.0f} [{e['low']:,.0f}, {e['high']:,.0f}] | "
                  f"{m['peak_memory_mb']['median']:,.0f} | {m['parameters']:,} |")
    marn, din, dien = (runs.get(f"MARN (width {args.width})"), runs.get(f"deepctr DIN (emb {args.width})"),
                       runs.get(f"deepctr DIEN, AUGRU (emb {args.width})"))
    feed = runs.get("input pipeline (parse + lookup)")
    trainers = [label for label in runs if label.startswith("MARN")]
    fastest = [max((runs[label][i] for label in trainers if "error" not in runs[label][i]), default={"error": "none"},
                   key=lambda r: r["examples_per_second"]) for i in range(args.repeats)] if trainers else None
    figures = {"device": device, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
               "repeats": args.repeats, "models": models,
               "marn_over_dien": ratio(marn, dien) if marn and dien else None,
               "marn_over_din": ratio(marn, din) if marn and din else None,
               "input_over_trainer": ratio(feed, fastest) if feed and fastest else None}
    for key, text, target in (("marn_over_dien", "MARN / DIEN", 1.0), ("marn_over_din", "MARN / DIN", 0.5),
                              ("input_over_trainer", "input pipeline / fastest MARN trainer", 5.0)):
        r = figures[key]
        if r and r["median"] is not None:
            print(f"{text} = {r['median']:.2f}x [{r['low']:.2f}, {r['high']:.2f}] (target >= {target}x)")
    if args.json:
        write_record(args.json, "training", figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="a `marn preprocess` output (default: %(default)s)")
    parser.add_argument("--config", help="its YAML config (default: the embedded data's)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--width", type=int, default=32, help="the peer's embedding width (default %(default)s)")
    parser.add_argument("--paper-width", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10, help="distinct batches held in memory")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved runs of every model; figures are their median and range (default %(default)s)")
    parser.add_argument("--xla", action="store_true")
    parser.add_argument("--only", nargs="+", help="measure only the rows whose label contains one of these")
    parser.add_argument("--json", help="also write a record of the figures to this JSON file (benchmarks/record.py)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    ensure_data(args)
    speed(args)


if __name__ == "__main__":
    main()
