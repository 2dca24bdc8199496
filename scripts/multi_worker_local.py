"""Start a local training cluster on 127.0.0.1: N `marn train` processes, with TF_CONFIG set for each.

    python scripts/multi_worker_local.py --workers 2 -- --config cfg.yaml --data prep --output runs/mw
    python scripts/multi_worker_local.py --workers 2 --ps 2 -- --config cfg.yaml --data prep --output runs/ps

Everything after `--` goes to `marn train`.

- Without `--ps`: a MultiWorkerMirroredStrategy cluster (`--set runtime.strategy=multi_worker` is added) of N
  workers. Worker 0 is the chief: it writes the run directory; the others save their checkpoint shards to
  <output>/workers/. Logs: <output>/worker-<i>.log.
- With `--ps P`: a ParameterServerStrategy cluster (`--set runtime.strategy=parameter_server`): one chief, N
  workers and P parameter servers. The workers and parameter servers serve until the chief has finished, then
  this script stops them. Logs: <output>/chief-0.log, worker-<i>.log, ps-<i>.log.

On a real cluster, run the same `marn train` command on every host with TF_CONFIG naming all of them
(docs/scale_out.md). Exits non-zero if the chief (or, without --ps, any worker) fails.
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


def cluster_of(workers: int, ps: int) -> dict:
    """The TF_CONFIG cluster: "worker" tasks only, or with `ps` parameter servers a "chief" and "ps" tasks too."""
    sizes = {"worker": workers} if not ps else {"chief": 1, "worker": workers, "ps": ps}
    ports = iter(free_ports(sum(sizes.values())))
    return {job: [f"127.0.0.1:{next(ports)}" for _ in range(n)] for job, n in sizes.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="number of local worker processes")
    parser.add_argument("--ps", type=int, default=0,
                        help="number of parameter-server processes (0: MultiWorkerMirroredStrategy, no chief)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before the cluster is killed")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the `marn train` arguments")
    args = parser.parse_args(argv)
    train_args = [a for a in args.train_args if a != "--"]
    output = train_args[train_args.index("--output") + 1]
    os.makedirs(output, exist_ok=True)
    cluster = cluster_of(args.workers, args.ps)
    strategy = "parameter_server" if args.ps else "multi_worker"
    processes = {}
    # servers first: the chief of a parameter-server cluster waits for them
    for job in ("ps", "worker", "chief"):
        for index in range(len(cluster.get(job, []))):
            env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": job, "index": index}}))
            log = open(os.path.join(output, f"{job}-{index}.log"), "w")
            processes[f"{job}-{index}"] = (subprocess.Popen(
                [sys.executable, "-m", "marn_tf.cli", "train", *train_args, "--set", f"runtime.strategy={strategy}",
                 "--no-progress"], env=env, stdout=log, stderr=subprocess.STDOUT), log)
    # what decides the outcome: the chief (parameter servers), or every worker (all-reduce)
    awaited = ["chief-0"] if args.ps else list(processes)
    status = 0
    for name in awaited:
        process, log = processes[name]
        try:
            code = process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            code = -9
        print(f"{name}: exit code {code} (log: {log.name})")
        status = status or code
        if code == -9:
            break
    for name, (process, log) in processes.items():
        if process.poll() is None:  # the parameter servers and workers serve until stopped
            process.kill()
            process.wait()
        log.close()
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
