"""The command-line arguments the Beam batch jobs share (`marn score`, `marn embed-items`), and the count type that
every marn command's counts take: a count out of its range is a usage error naming the flag (argparse exits 2)
before any work, not a number that reaches Beam or TensorFlow. Imports nothing heavy: the parser is built for
every command."""
from __future__ import annotations

import argparse
from typing import Callable


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`; argparse names the flag in its error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: give {minimum} or more")
        return value

    return parse


def add_job_arguments(parser: argparse.ArgumentParser, batch_size: int, files_of: str) -> None:
    """--batch-size, --workers and --num-shards of a batch job (`files_of`: what each of its files holds)."""
    parser.add_argument("--batch-size", type=at_least(1), default=batch_size,
                        help="largest RunInference batch (default %(default)s)")
    parser.add_argument("--workers", type=at_least(1), default=1,
                        help="local runner processes (default %(default)s; each loads the model; ignored with "
                             "--runner)")
    parser.add_argument("--num-shards", type=at_least(0), default=0,
                        help=f"files of {files_of} (default 0: as the runner chooses)")
