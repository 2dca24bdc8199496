"""One short line for an error a user must read (a check that failed, a dead-lettered record): no traceback."""
from __future__ import annotations

import re

_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[", "You may be trying to load",
          "Traceback")


def short_reason(err: BaseException, limit: int = 300) -> str:
    """`Type: the first line that says what went wrong`, at most `limit` characters.

    TensorFlow wraps the reason in boilerplate (node names, "Graph execution error", device hints); a failed
    `tf.debugging.assert_*` puts its message in the first brackets after "assertion failed:".
    """
    text = getattr(err, "message", None) or str(err)
    lines = [line.strip() for line in text.splitlines()]
    reason = next((line for line in lines if line and not line.startswith(_NOISE)), "") or type(err).__name__
    reason = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:[^\]]*\].*$", "", reason)  # op and device names
    if reason.startswith("assertion failed: ["):
        reason = reason[len("assertion failed: ["):].split("]", 1)[0]
    reason = f"{type(err).__name__}: {reason}"
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."
