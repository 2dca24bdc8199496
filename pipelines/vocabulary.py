"""Vocabularies: ordering, thresholds and files (one token a line; line k has index k + 1, 0 is OOV).

The order is by training-window count, descending, then token: the same input always gives the same
file, and the item vocabulary's frequent items come first (see ItemTableSpec.num_with_id_embedding).
"""
from __future__ import annotations

from typing import Iterable

from apache_beam.io.filesystems import FileSystems


def ordered_tokens(counts: Iterable[tuple[str, int]], min_count: int) -> list[str]:
    """Tokens with count >= min_count, most frequent first, ties by token."""
    return [t for t, c in sorted(counts, key=lambda tc: (-tc[1], tc[0])) if c >= min_count and t != ""]


def item_vocabulary(item_counts: Iterable[tuple[str, int]], min_count: int) -> tuple[list[str], int]:
    """Every catalog item (cold ones too: their content still matters), most frequent first.

    Returns (tokens, k): the first k items were seen at least min_count times in the training window
    and get their own ID embedding.
    """
    ordered = sorted(item_counts, key=lambda tc: (-tc[1], tc[0]))
    return [t for t, _ in ordered], sum(1 for _, c in ordered if c >= min_count)


def write_vocabulary(path: str, tokens: list[str]) -> None:
    with FileSystems.create(path) as f:
        f.write("".join(t + "\n" for t in tokens).encode("utf-8"))
