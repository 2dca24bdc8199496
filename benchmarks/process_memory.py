"""Resident memory of a process tree, read from /proc (what the benchmarks sample while a job runs)."""
from __future__ import annotations

import os


def process_tree(root: int) -> dict[int, int]:
    """{pid: resident bytes} of `root` and all its descendants (processes that end meanwhile are skipped)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(name))
            rss[int(name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    found, stack = {}, [root]
    while stack:
        pid = stack.pop()
        found[pid] = rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return found
