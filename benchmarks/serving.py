"""Serving benchmark: latency of the reloaded SavedModel's `serving_default`, MARN beside a DIN peer.

    python benchmarks/serving.py --run runs/demo/model --data runs/demo/preprocessed   # after `make demo`
    python benchmarks/serving.py --model runs/demo/export/marn/1 --data runs/demo/preprocessed

Two request shapes, built from validation examples as serialized tf.Examples (what a gRPC client sends):

* ranking: 1 user x 100 candidates (one user's features and behaviour sequence, 100 candidate items);
* batch 512: 512 validation impressions (many users), a batch-scoring or server-batching size.

Each model is loaded with `tf.saved_model.load` in its own fresh process and called through its
`serving_default` signature: warm-up calls, then `--calls` timed calls per shape, one at a time; p50 / p99
are over those calls, in milliseconds, wall clock including parsing and vocabulary lookups. The two
models' processes alternate `--repeats` times (a machine's speed drifts between minutes); the table gives
the median over repeats of each figure with the lowest and highest. The peer is
deepctr's DIN (embedding 32, user + candidate item/category + behaviour items/categories) behind the same
kind of signature (tf.Example parsing and the same vocabulary files); its weights are untrained, which
does not change its latency. Targets: MARN's ranking p99 at most 10 ms on 2 cores, and no slower than the
peer. `--json PATH` writes the figures as a record (`benchmarks/record.py`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import marn_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from record import command_line, median_range, write_record  # benchmarks/, beside this script

WORK = "/tmp/marn-bench/serving"
CANDIDATES = 100
BATCH = 512


# -- requests ----------------------------------------------------------------------------------------------
def write_requests(data: str, path: str) -> None:
    """The two request shapes, from validation examples, as an .npz of serialized tf.Examples."""
    import numpy as np
    import tensorflow as tf

    from marn_tf.export.warmup import read_examples
    from marn_tf.schema import Schema

    schema = Schema.load(data)
    examples = read_examples(data, schema, "validation", max(BATCH, CANDIDATES + 1))
    user = tf.train.Example.FromString(examples[0])
    ranking = []
    for other in examples[1:CANDIDATES + 1]:
        request = tf.train.Example()
        request.CopyFrom(user)
        request.features.feature["item_id"].CopyFrom(tf.train.Example.FromString(other).features.feature["item_id"])
        ranking.append(request.SerializeToString())
    np.savez(path, ranking=np.array(ranking, dtype=object), batch=np.array(examples[:BATCH], dtype=object))


# -- the DIN peer ------------------------------------------------------------------------------------------
def build_din_peer(data: str, config_path: str, output: str) -> None:
    """deepctr DIN behind a tf.Example-parsing `serving_default`, saved as a SavedModel at `output`."""
    import tensorflow as tf
    from deepctr.models import DIN

    from benchmarks.train import deepctr_columns
    from marn_tf.config import Config
    from marn_tf.schema import Schema
    from marn_tf.training.training_run import load_network
    from marn_tf.export.request_features import serving_parse_spec

    schema = Schema.load(data)
    network = load_network(Config.load(config_path), schema, data)
    columns = deepctr_columns(schema, 32)
    din = DIN(columns, ["item_id", "cate_id"])
    spec = {k: v for k, v in serving_parse_spec(schema).items() if k in ("user_id", "item_id", "hist_item_id",
                                                                          "hist_length")}

    class Peer(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = din
            self.item_lookup = network.lookup.get_layer("item_id_lookup")
            self.user_lookup = network.lookup.get_layer("user_id_lookup")
            self.category = tf.Variable(network.item_tower.table["category_id"].numpy(), trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            f = tf.io.parse_example(examples, spec)
            item, history = self.item_lookup(f["item_id"]), self.item_lookup(f["hist_item_id"])
            x = {"user": self.user_lookup(f["user_id"]), "item_id": item, "cate_id": tf.gather(self.category, item),
                 "hist_item_id": history, "hist_cate_id": tf.gather(self.category, history),
                 "seq_length": f["hist_length"]}
            return {"probability": tf.squeeze(self.model(x, training=False), -1)}

    peer = Peer()
    tf.saved_model.save(peer, output, signatures={"serving_default": peer.serve})


# -- latency (child process) -------------------------------------------------------------------------------
def latency(model_dir: str, requests: str, calls: int, warmup: int) -> dict:
    import numpy as np
    import tensorflow as tf

    start = time.perf_counter()
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    result = {"load_s": time.perf_counter() - start}
    shapes = np.load(requests, allow_pickle=True)
    for shape in ("ranking", "batch"):
        examples = tf.constant(list(shapes[shape]))
        for _ in range(warmup):
            serve(examples=examples)["probability"].numpy()
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            serve(examples=examples)["probability"].numpy()
            times.append(time.perf_counter() - t)
        ms = np.array(times) * 1e3
        result[shape] = {"size": int(examples.shape[0]), "p50_ms": float(np.percentile(ms, 50)),
                         "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}
    return result


def child(args) -> None:
    if args.child == "latency":
        print("RESULT " + json.dumps(latency(args.model, args.requests, args.calls, args.warmup)), flush=True)
    elif args.child == "din":
        build_din_peer(args.data, args.config, args.model)


def run_child(*arguments: str) -> dict:
    done = subprocess.run([sys.executable, os.path.abspath(__file__), *arguments], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(arguments[:2])} failed:\n{done.stderr[-3000:]}")
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), "RESULT {}")
    return json.loads(line[len("RESULT "):])


# -- parent ------------------------------------------------------------------------------------------------
def summarize(runs: dict[str, list[dict]], model: str, device: str, calls: int, warmup: int) -> dict:
    """The figures of every model's alternating runs: the median of each with the lowest and highest run."""
    def spread(name: str, shape: str, figure: str) -> dict:
        return median_range(r[shape][figure] for r in runs[name])

    return {"device": device, "model": model, "calls": calls, "warmup": warmup,
            "repeats": min(len(r) for r in runs.values()),
            "shapes": {"ranking": f"1 user x {CANDIDATES} candidates", "batch": f"batch {BATCH}"},
            "median": {name: {"load_s": median_range(r["load_s"] for r in runs[name]),
                              **{shape: {figure: spread(name, shape, figure) for figure in ("p50_ms", "p99_ms")}
                                 for shape in ("ranking", "batch")}} for name in runs},
            "runs": runs}


def print_table(figures: dict) -> None:
    print(f"\n{command_line()}\n{figures['device']}; {figures['calls']} timed calls per shape, one at a time, "
          f"after {figures['warmup']} warm-up calls; median [lowest, highest] of {figures['repeats']} alternating "
          f"runs per model")
    print(f"MARN: {figures['model']}\n")
    print(f"| model | 1 user x {CANDIDATES} candidates p50 / p99 ms | batch {BATCH} p50 / p99 ms | load s |")
    print("|---|---:|---:|---:|")
    for name, m in figures["median"].items():
        cells = [" / ".join(f"{m[shape][figure]['median']:.2f} [{m[shape][figure]['low']:.2f}, "
                            f"{m[shape][figure]['high']:.2f}]" for figure in ("p50_ms", "p99_ms"))
                 for shape in ("ranking", "batch")]
        print(f"| {name} | {cells[0]} | {cells[1]} | {m['load_s']['median']:.1f} |")
    marn = figures["median"]["MARN"]["ranking"]["p99_ms"]["median"]
    din = figures["median"]["deepctr DIN (peer)"]["ranking"]["p99_ms"]["median"]
    print(f"\ntarget: ranking p99 <= 10 ms: {'met' if marn <= 10 else 'NOT met'} ({marn:.2f} ms); "
          f"no slower than the peer: {'met' if marn <= din else 'NOT met'} (MARN/peer p99 = {marn / din:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a `marn preprocess` output (validation examples, vocabularies)")
    parser.add_argument("--run", help="a `marn train` run to export (or --model)")
    parser.add_argument("--model", help="an exported version directory <base>/<name>/<version>")
    parser.add_argument("--config", help="YAML config for the peer (default: the run's run_config.yaml)")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per request shape (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each model (default %(default)s)")
    parser.add_argument("--work", default=WORK, help="where exports and requests go (default %(default)s)")
    parser.add_argument("--json", help="also write a record of the figures to this JSON file (benchmarks/record.py)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--requests", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if not (args.run or args.model):
        parser.error("give --run (a training run to export) or --model (an exported version)")
    from benchmarks.train import device_name
    from marn_tf.export.check import read_info

    os.makedirs(args.work, exist_ok=True)
    if args.model is None:
        from marn_tf.export.saved_model import export_model

        print(f"exporting {args.run} ...", flush=True)
        args.model = export_model(args.run, args.data, os.path.join(args.work, "export"), warmup_batch_sizes=()).path
    config = args.config or os.path.join(read_info(args.model)["run"], "run_config.yaml")
    peer = os.path.join(args.work, "din_peer", str(int(time.time())))
    print("building the DIN peer's SavedModel ...", flush=True)
    run_child("--child", "din", "--data", args.data, "--config", config, "--model", peer)
    requests = os.path.join(args.work, "requests.npz")
    write_requests(args.data, requests)

    models = (("MARN", args.model), ("deepctr DIN (peer)", peer))
    runs = {name: [] for name, _ in models}
    for repeat in range(args.repeats):
        for name, directory in models:
            print(f"repeat {repeat + 1}/{args.repeats}: measuring {name} ({directory}) ...", flush=True)
            runs[name].append(run_child("--child", "latency", "--model", directory, "--requests", requests,
                                        "--calls", str(args.calls), "--warmup", str(args.warmup), "--data", args.data))

    figures = summarize(runs, args.model, device_name(), args.calls, args.warmup)
    print_table(figures)
    if args.json:
        write_record(args.json, "serving", figures)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
