"""One JSON record per benchmark run: its figures beside the command, the date, the machine, the package versions
and the code they were measured on. `benchmarks/render.py` renders the documentation's tables from these records.

    {"kind": "speed", "command": "python benchmarks/run_all.py ...", "date": "2026-12-07T10:00:00+00:00",
     "machine": {"cpu": "AMD EPYC", "cores": 2, "gpu": null, "python": "3.11.7", "platform": "Linux-..."},
     "packages": {"tensorflow": "2.21.0", ...}, "code": "<git describe --always --dirty>", "figures": {...}}

Timing figures are `median_range` dicts: the median over repeats with the lowest and highest run, since
identical runs on a shared machine differ by tens of percent.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from typing import Iterable, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
# the stack a figure depends on: TensorFlow and its Keras, the pipeline's Beam, the retrieval layers, the peer
PACKAGES = ("tensorflow", "tf-keras", "keras", "apache-beam", "tensorflow-recommenders", "numpy", "deepctr")


def median_range(values: Iterable[float]) -> dict:
    """{"median", "low", "high", "runs"} of the measured values (an empty list gives None figures)."""
    runs = [float(v) for v in values]
    if not runs:
        return {"median": None, "low": None, "high": None, "runs": []}
    return {"median": statistics.median(runs), "low": min(runs), "high": max(runs), "runs": runs}


def command_line(argv: Optional[list[str]] = None) -> str:
    """The command as typed from the repository root: `python benchmarks/x.py ARGS` (the script path relative to
    the repository whatever the working directory)."""
    argv = list(sys.argv if argv is None else argv)
    script = argv[0]
    if os.path.isfile(script) and os.path.abspath(script).startswith(REPO + os.sep):
        script = os.path.relpath(os.path.abspath(script), REPO)
    return shlex.join(["python", script, *argv[1:]])


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def gpus() -> list[str]:
    """GPU names from nvidia-smi; else from TensorFlow when the process has imported it (never imported here, so a
    record of a process without TensorFlow stays cheap); [] when there is none."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30)
        if done.returncode == 0:
            return [line.strip() for line in done.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return []
    names = []
    for device in tf.config.list_physical_devices("GPU"):
        names.append(tf.config.experimental.get_device_details(device).get("device_name", device.name))
    return names


def machine() -> dict:
    """What the figures were measured on."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpus() or None, "python": platform.python_version(),
            "platform": platform.platform()}


def package_versions() -> dict[str, Optional[str]]:
    """Installed versions of the packages in PACKAGES (None for one that is not installed)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def code_version() -> Optional[str]:
    """`git describe --always --dirty` of the repository (None outside a git checkout)."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def make_record(kind: str, figures: dict, command: Optional[str] = None) -> dict:
    """A record of `figures` measured now, on this machine, by `command` (default: this process's)."""
    return {"kind": kind, "command": command or command_line(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "packages": package_versions(), "code": code_version(), "figures": figures}


def write_record(path: str, kind: str, figures: dict, command: Optional[str] = None) -> dict:
    """Writes `make_record(...)` to `path` (its folder made if needed) and returns it."""
    record = make_record(kind, figures, command)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    return record


def read_record(path: str) -> dict:
    """A record written by `write_record`; a ValueError names the file when it is not one."""
    with open(path) as f:
        record = json.load(f)
    if not isinstance(record, dict) or not {"kind", "figures"} <= set(record):
        raise ValueError(f"{path}: not a benchmark record (no \"kind\" and \"figures\")")
    return record
