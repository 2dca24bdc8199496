"""A full disk (ENOSPC) or an exhausted quota (EDQUOT), told apart from every other failure, so that a command
ends with one line naming the path and what to do rather than a traceback.

Whatever raised it (our own writes, TensorFlow writing a checkpoint, a Beam worker, matplotlib saving a plot),
`disk_full_message(err)` finds it in the exception, its causes, or the message TensorFlow and Beam carry it in.
Every marn command resumes where it stopped, so freeing space and running the same command again is the fix.
"""
from __future__ import annotations

import errno
import re
from typing import Optional

FULL = (errno.ENOSPC, errno.EDQUOT)
_TEXTS = ("No space left on device", "Disk quota exceeded")
# "[Errno 28] No space left on device: '/x/y'", TensorFlow's "/x/y; No space left on device"
_PATH_AFTER = re.compile(r"(?:No space left on device|Disk quota exceeded)['\"]?:\s*['\"]([^'\"]+)['\"]")
_PATH_BEFORE = re.compile(r"((?:[a-z][a-z0-9+.-]*://|/)[^\s;:'\"]+)\s*;\s*(?:No space left on device|Disk quota exceeded)")


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in FULL


def _chain(err: BaseException):
    """`err` and the exceptions it was raised from or while handling, once each."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def advice(path: Optional[str], reason: str) -> str:
    """The one line a command ends with: what happened, where, and what to do."""
    where = f" writing {path}" if path else ""
    return (f"{reason}{where}: free space on that disk (or raise the quota), then run the same command again: "
            "it resumes from what was written before")


def disk_full_message(err: BaseException) -> Optional[str]:
    """The message for a full disk or quota somewhere in `err`'s chain; None when it is not one."""
    for cause in _chain(err):
        if is_disk_full(cause):
            return advice(cause.filename, cause.strerror or "no space left on device")
        text = str(cause)
        found = next((t for t in _TEXTS if t in text), None)
        if found:  # TensorFlow's and Beam's errors carry the OSError only as text
            match = _PATH_AFTER.search(text) or _PATH_BEFORE.search(text)
            return advice(match.group(1) if match else None, found)
    return None
