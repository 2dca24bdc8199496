"""Start N local `marn train` workers as one MultiWorkerMirroredStrategy cluster (TF_CONFIG on 127.0.0.1).

    python scripts/multi_worker_local.py --workers 2 -- --config cfg.yaml --data prep --output runs/mw

Everything after `--` goes to `marn train`; `--set runtime.strategy=multi_worker` is added. Worker 0 is the
chief: it writes the run directory; the others save their checkpoint shards to <output>/workers/.
On a real cluster, run the same `marn train` command on every host with TF_CONFIG naming all of them.
Worker logs go to <output>/worker-<i>.log. Exits non-zero if any worker fails.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="number of local worker processes")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before the workers are killed")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the `marn train` arguments")
    args = parser.parse_args(argv)
    train_args = [a for a in args.train_args if a != "--"]
    output = train_args[train_args.index("--output") + 1]
    os.makedirs(output, exist_ok=True)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(args.workers)]}
    processes = []
    for index in range(args.workers):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        log = open(os.path.join(output, f"worker-{index}.log"), "w")
        processes.append((subprocess.Popen(
            [sys.executable, "-m", "marn_tf.cli", "train", *train_args, "--set", "runtime.strategy=multi_worker",
             "--no-progress"], env=env, stdout=log, stderr=subprocess.STDOUT), log))
    status = 0
    for index, (process, log) in enumerate(processes):
        try:
            code = process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            for p, _ in processes:
                p.kill()
            code = -9
        log.close()
        print(f"worker {index}: exit code {code} (log: {log.name})")
        status = status or code
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
