"""What the Beam batch jobs (`marn score`, `marn embed-items`) share about their outputs: counts kept as data, and
the output prefix they own.

Counts are data: a job counts records read, rows written and dead letters by reason with a combiner and writes
them to `<output>-counts.json`, which is read back and checked, so the check is exact on any runner, whatever
metrics it reports (some report attempted metrics only, or none). A job that wrote no row (nothing read, or every
record dead-lettered) says so with the first dead letters' reasons (`nothing_done`), for a non-zero exit.

The output prefix's directory belongs to the command (`marn_tf/storage/ownership.py`): a new or empty directory is
claimed, one that holds anything else without the command's marker is refused; before the job, the files an
earlier run wrote under the same prefix are deleted, so `<output>-*` never mixes two runs' shards.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
from typing import Any, Iterator, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from marn_tf import schema as S
from marn_tf.storage import files, ownership
from marn_tf.storage.errors import OwnershipError

DEAD_LETTER = "dead_letter:"  # a data count's key: dead letters of the reason that follows


# ------------------------------------------------------------------------------- counts, as data, on any runner

def count(pcoll: beam.PCollection, key: str, label: str) -> beam.PCollection:
    """(key, 1) per element of `pcoll`: one of the data counts `write_counts` sums."""
    return pcoll | label >> beam.Map(lambda _, k=key: (k, 1))


def write_dead_letters(letters: Sequence[beam.PCollection], output_prefix: str) -> beam.PCollection:
    """Writes every dead letter to `<output>-dead_letter-*.jsonl`; returns (`dead_letter:<reason>`, 1) per letter."""
    dead = tuple(letters) | "All dead letters" >> beam.Flatten()
    _ = dead | "Dead letter lines" >> beam.Map(json.dumps) | "Write dead letters" >> beam.io.WriteToText(
        f"{output_prefix}-dead_letter", file_name_suffix=".jsonl")
    return dead | "Dead letter reasons" >> beam.Map(lambda letter: (DEAD_LETTER + letter["reason"], 1))


def counts_path(output_prefix: str) -> str:
    return f"{output_prefix}-counts.json"


def write_counts(counts: Sequence[beam.PCollection], output_prefix: str, summary) -> None:
    """Sums the (key, n) data counts with a combiner and writes `summary(sums)` to `<output>-counts.json`:
    exact on any runner, unlike metrics, which some runners report as attempted only (or not at all)."""
    _ = (tuple(counts) | "All counts" >> beam.Flatten()
         | "Sum counts" >> beam.CombinePerKey(sum)
         | "Counts dict" >> beam.combiners.ToDict()
         | "Write counts" >> beam.Map(_write_summary, counts_path(output_prefix), summary))


def _write_summary(data: dict, path: str, summary) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps(summary(data), indent=2).encode("utf-8"))


def _accounted(counts: Mapping[str, Any], done: str, folded: Sequence[str]) -> int:
    return counts[done] + sum(counts[k] for k in folded) + sum(counts["dead_letters"].values())


def tally(data: Mapping[str, int], done: str, reasons: Sequence[str], folded: Sequence[str] = ()) -> dict:
    """A job's counts from its data counts (keys `read`, `done`, each of `folded`, `dead_letter:<reason>`).

    Args:
      done: the count of rows written.
      reasons: the dead-letter reasons shown even when 0 (any other one found is shown too).
      folded: records that are neither written nor dead-lettered, e.g. repeated ids written once.
    Returns: read, done, folded, dead_letters {reason: n}, dead_lettered (their sum) and balanced (read = done +
    folded + dead-lettered).
    """
    dead = {reason: data.get(DEAD_LETTER + reason, 0) for reason in reasons}
    dead.update({k[len(DEAD_LETTER):]: n for k, n in data.items() if k.startswith(DEAD_LETTER)})
    counts = {"read": data.get("read", 0), done: data.get(done, 0), **{k: data.get(k, 0) for k in folded},
              "dead_lettered": sum(dead.values()), "dead_letters": dead}
    counts["balanced"] = counts["read"] == _accounted(counts, done, folded)
    return counts


def check_counts(counts: Mapping[str, Any], done: str, folded: Sequence[str] = ()) -> None:
    """Raises when the records read are not the rows written + `folded` + the dead letters (a bug, never the data)."""
    accounted = _accounted(counts, done, folded)
    if counts["read"] != accounted:
        raise RuntimeError(f"records lost or counted twice (a bug in marn): {counts['read']} read, but {accounted} = "
                           f"{done} + {' + '.join([*folded, 'dead-lettered'])}: {dict(counts)}")


def run_and_check(pipeline: beam.Pipeline, output_prefix: str, done: str, folded: Sequence[str] = ()) -> dict:
    """Runs `pipeline` to its end, reads back the counts it wrote (`write_counts`) and checks them."""
    pipeline.run().wait_until_finish()
    path = counts_path(output_prefix)
    text = files.read_text(path)
    if text is None:
        raise RuntimeError(f"the job finished without writing its counts {path} (a bug in marn or the runner)")
    counts = json.loads(text)
    check_counts(counts, done, folded)
    return counts


def check_num_shards(num_shards: int) -> None:
    if not isinstance(num_shards, int) or isinstance(num_shards, bool) or num_shards < 0:
        raise S.SchemaError(f"--num-shards must be 0 (the runner chooses) or more, got {num_shards!r}")


def check_batch_size(batch_size: int) -> None:
    """Before any work: RunInference batches of at most `batch_size` records need one record or more."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise S.SchemaError(f"--batch-size must be 1 or more (the largest RunInference batch), got {batch_size!r}")


def nothing_done(counts: Mapping[str, Any], done: str, output_prefix: str, records: str = "records") -> Optional[str]:
    """Why a finished job wrote no row, with the first dead letters' reasons, or None when it wrote rows. A job
    that did nothing must not exit 0: a scheduler would take the empty output for a result."""
    if counts[done]:
        return None
    if not counts["read"]:
        return f"read no {records}, so none was {done}: the input files are empty"
    shown = "; ".join(first_dead_letters(output_prefix)) or "none found"
    return (f"none of the {counts['read']:,} {records} read was {done}: {counts['dead_lettered']:,} dead-lettered, "
            f"the first reasons: {shown} (every one in {output_prefix}-dead_letter-*.jsonl)")


def first_dead_letters(output_prefix: str, count: int = 3, scanned: int = 1000) -> list[str]:
    """`reason: detail` of up to `count` different dead letters among the first `scanned` the job wrote."""
    paths = sorted(m.path for m in FileSystems.match([f"{output_prefix}-dead_letter-*.jsonl"])[0].metadata_list)

    def lines() -> Iterator[bytes]:
        for path in paths:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                yield from f

    found: list[str] = []
    for line in itertools.islice(lines(), scanned):
        letter = json.loads(line)
        text = f"{letter['reason']}: {letter['detail']}"
        if text not in found:
            found.append(text)
        if len(found) == count:
            break
    return found
    return found


# ------------------------------------------------------------------------------------------ the output prefix

def split_prefix(output_prefix: str) -> tuple[str, str]:
    """(directory, file name prefix) of `--output`; raises when it names no file name prefix."""
    if files.is_remote(output_prefix):
        directory, _, base = output_prefix.rpartition("/")
    else:
        directory, base = os.path.split(output_prefix)
    if base in ("", ".", ".."):
        raise S.SchemaError(f"--output {output_prefix!r} must end in a file name prefix, e.g. runs/scores/test "
                            "for runs/scores/test-*")
    return directory or ".", base


def own_names(base: str, suffixes: Sequence[str]) -> re.Pattern:
    """The names a run writes under the prefix `base`: shards of each of `suffixes`, dead letters, the counts,
    and Beam's temporary directories (which a killed run leaves)."""
    b, shard = re.escape(base), r"-\d+-of-\d+"
    return re.compile(rf"{b}{shard}(?:{'|'.join(map(re.escape, suffixes))})|{b}-dead_letter{shard}\.jsonl"
                      rf"|{b}-counts\.json|beam-temp-{b}(?:-dead_letter)?-[0-9a-f]{{32}}")


@contextlib.contextmanager
def owned_prefix(output_prefix: str, kind: str, command: str, suffixes: Sequence[str],
                 inputs: Sequence[tuple[str, str]] = (), example: str = "") -> Iterator[None]:
    """Makes `output_prefix` the command's to write, with the ownership rules of every marn command.

    Its directory must be new, empty, or marked by `command` (`ownership.check_claimable`: anything else is refused,
    naming what is there); a file there that `<output_prefix>-*` matches but that `command` does not write is
    refused; no input may be among what is deleted. Then, under the directory's lock, what an earlier run wrote
    under the prefix (`own_names`) is deleted, so `<output_prefix>-*` holds this run's files only. Nothing is
    written or deleted when a check fails.
    """
    directory, base = split_prefix(output_prefix)
    own = own_names(base, suffixes)
    hint = f" for --output (its last part is a file name prefix, e.g. {example})" if example else ""

    def earlier_files() -> list[str]:
        names = [n for n in files.entries(directory) if n.startswith(f"{base}-") or own.fullmatch(n)]
        foreign = [n for n in names if not own.fullmatch(n)]
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            them = "it" if len(foreign) == 1 else "them"
            raise OwnershipError(
                f"{directory} holds {shown}, which {output_prefix}-* matches but `{command}` does not write: it "
                f"refuses to write there, since readers of {output_prefix}-* would take {them} for part of its "
                f"output. Choose another --output prefix, or move {them} away.")
        return [files.join(directory, n) for n in names]

    ownership.check_claimable(directory, kind, command, hint)
    earlier = earlier_files()
    with ownership.owned_directory(directory, kind, command, inputs, written=earlier, hint=hint):
        for path in earlier_files():  # again under the lock: what it found may have changed
            ownership.remove(path, directory)
        yield
