"""The tracked files describe the project as it is, never how it came to be built.

Every file git tracks is searched (binary files and the benchmark records benchmarks/results/*.json aside: a
record keeps the exact command it ran) for the words that narrate the building of the project: the work
periods and numbered requests it was built in, the machines figures were taken on by their nicknames, the
people who built it, commit hashes, and documents outside the repository. Dates are allowed everywhere
(docs/experiments.md and CHANGELOG.md are dated logs). Each pattern below is written so that this file does not
match it, and `test_the_patterns_spare_code_and_plain_english` pins the legitimate uses each one leaves alone.
"""
from __future__ import annotations

import fnmatch
import re

import pytest

from tests.testing import text_of, tracked_files

NOT_SEARCHED = ("benchmarks/results/*.json",)  # records: the command they hold is what was run, word for word

# Short hex runs that are not hashes: a number in scientific notation such as 2e10000.
_SCIENTIFIC = re.compile(r"\d+e\d+")

PATTERNS: dict[str, re.Pattern] = {
    # The word as prose; an identifier that holds it (clear_session, tf.compat.v1.Session, sessions_per_day,
    # pytest's scope="session", `Session`) is code.
    "work period": re.compile(
        r"(?<![\w.])(?!(?<=[`'\"])sess[i]ons?[`'\"])sess[i]ons?(?![\w(])", re.IGNORECASE),
    "numbered request": re.compile(
        r"\b(?:iss[u]es?|requ[e]sts?|pull requ[e]sts?|ro[u]nds?)\s*#?\s*\d+\b|\bwork ro[u]nds?\b", re.IGNORECASE),
    "machine nickname": re.compile(r"\b(?:build|second|device)\s+mach[i]nes?\b|\bdevice t[o]ol\b", re.IGNORECASE),
    "builder": re.compile(
        r"\bsub-?ag[e]nts?\b|\bhelp[e]rs?(?:'s)?\s+(?:measured|ran|found|wrote|reported|tried|timed|said|noted|"
        r"observed|saw)\b", re.IGNORECASE),
    "commit hash": re.compile(r"\bcomm[i]t\s+[0-9a-f]{7,40}\b|(?<![\w\-./])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)"
                              r"[0-9a-f]{7,40}(?![\w\-])"),
    "document outside the repository": re.compile(
        r"\.\./sh[a]red\b|MARN[_]SPEC|\bSTACK[.]md\b|\.libr[a]ry/", re.IGNORECASE),
}


def history_words(line: str) -> list[str]:
    """The history words in one line of text, each as 'kind: matched text'."""
    found = []
    for kind, pattern in PATTERNS.items():
        for match in pattern.finditer(line):
            if kind == "commit hash" and _SCIENTIFIC.fullmatch(match.group()):
                continue
            found.append(f"{kind}: {match.group()!r}")
    return found


def test_no_tracked_file_narrates_how_the_project_was_built():
    files = tracked_files()
    if files is None:
        pytest.skip("not a git checkout: no tracked files to search")
    hits = []
    for path in files:
        if any(fnmatch.fnmatch(path, pattern) for pattern in NOT_SEARCHED):
            continue
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            hits += [f"{path}:{number}: {word}" for word in history_words(line)]
    assert not hits, ("say what the project is and what was measured, not how it was built:\n"
                      + "\n".join(hits))


@pytest.mark.parametrize("line", [
    "measured in " + "sess" + "ion 11 on 2 cores",
    "Ses" + "sion-wide fixtures",
    "until the " + "sess" + "ions that built this",
    "Targets (" + "iss" + "ue 4): p99 at most 10 ms",
    "see " + "Iss" + "ue #12",
    "asked in " + "req" + "uest 7",
    "as of " + "rou" + "nd 3",
    "a " + "work " + "round" + " later",
    "the " + "build " + "machine" + " has 2 cores",
    "on a " + "second " + "machine",
    "the " + "device " + "tool" + " reported no GPU",
    "a " + "sub" + "agent",
    "a " + "help" + "er measured 4,008 examples/s",
    "was the identity gathers at " + "cc27" + "19d",
    "since " + "comm" + "it 643e" + "6f3",
    "see " + "../sh" + "ared/docs/x.md",
    "MARN" + "_SPEC.md marks it",
    "pinned as in " + "STACK" + ".md",
    "see ../" + ".libr" + "ary/env/machines/python.md",
])
def test_the_patterns_catch_each_history_word(line):
    assert history_words(line)


@pytest.mark.parametrize("line", [
    "    tf.keras.backend.clear_session()",
    "with tf.compat.v1.Session() as s:",
    '@pytest.fixture(scope="session")',
    "sessions_per_day: float = 0.4",
    "the issue with an empty history is its mask",
    "a request of 100 candidates; requests per second",
    "round(seconds, 2); config round trip; round-trips",
    "a machine with 2 cores; another machine may share a name",
    "the client helpers refuse it before sending; the gRPC helper fills rates",
    "sha256 " + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "run din-seed1-f8c8c9f697",
    "learning rate 1e100000, 2026-12-06",
    "the files 1767225600 and 4026531836",
])
def test_the_patterns_spare_code_and_plain_english(line):
    assert not history_words(line)
