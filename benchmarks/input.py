"""tf.data input benchmark: examples/s of `marn_tf.data.input.make_dataset` on a pipeline output.

    python benchmarks/input.py --data /tmp/marn-bench/out-1000000-2       # made by benchmarks/pipeline.py
    python benchmarks/input.py --data DIR --batch-size 1024 --batches 300

Reads the train split (parse included, no model), after a warm-up of 10 batches.
"""
from __future__ import annotations

import argparse
import time

import marn_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a `marn preprocess` output directory")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()

    from marn_tf.data.input import make_dataset
    from marn_tf.schema import Schema

    schema = Schema.load(args.data)
    ds = iter(make_dataset(args.data, schema, "train", args.batch_size, repeat=True))
    for _ in range(10):
        next(ds)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(ds)
    elapsed = time.perf_counter() - start
    print(f"tf.data input, batch {args.batch_size}, sequence length {schema.sequence_length}: "
          f"{args.batches * args.batch_size / elapsed:,.0f} examples/s ({args.batches} batches in {elapsed:.1f} s)")


if __name__ == "__main__":
    main()
