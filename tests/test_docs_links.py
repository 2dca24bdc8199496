"""Links stay inside the repository: a reader of any clone can follow every one.

Every relative link of every tracked Markdown file (inline `[text](target)`, images, reference definitions
`[name]: target`, and HTML `href`/`src`) leads to a tracked file, or a folder that holds tracked files, and its
`#anchor`, when it names a heading of a tracked Markdown file, is one of that file's headings (GitHub's anchor
rules). A link that leaves the repository (`../`) fails; public addresses (`https:`, `mailto:`) are not
followed. Code blocks and code spans are not links. Beyond links, every page a tracked file names
(`docs/pipeline.md`), and every repository file a Markdown file names (`tests/testing.py`), is a tracked file,
so a moved page leaves no stale mention behind, and no path named with `../` leads out of the repository. Code
may name made-up files (a test's fixtures), and the dated logs (CHANGELOG.md, docs/experiments.md) files as they
were on their date.
"""
from __future__ import annotations

import fnmatch
import posixpath
import re
import urllib.parse
from typing import Callable, Optional

import pytest

from tests.testing import text_of, tracked_files

NOT_SEARCHED = ("benchmarks/results/*.json",)  # records: their commands name outputs that the run wrote
DATED_LOGS = ("CHANGELOG.md", "docs/experiments.md")

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?")
HTML_LINK = re.compile(r"\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
EXTENSIONS = ("md", "py", "yaml", "yml", "json", "txt", "toml", "cfg", "ini", "sh")  # of the files Markdown names


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
            fence = None
        elif fence is None:
            lines.append((number, line))
    return lines


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link in a Markdown text (code spans hold none)."""
    found = []
    for number, line in prose_lines(text):
        line = CODE_SPAN.sub("", line)
        for pattern in (INLINE_LINK, REFERENCE, HTML_LINK):
            found += [(number, match.group(1)) for match in pattern.finditer(line)]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link or image: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a Markdown text defines: its headings (a repeated one numbered -1, -2, ...) and HTML ids."""
    found, seen = set(), {}
    for _, line in prose_lines(text):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def link_problem(source: str, target: str, tracked: set[str], folders: set[str],
                 read: Callable[[str], Optional[str]] = text_of) -> Optional[str]:
    """Why `target`, linked from the tracked file `source`, does not resolve; None when it does. `read` gives a
    tracked file's text."""
    if SCHEME.match(target) or not target:
        return None
    path, _, anchor = target.partition("#")
    path = urllib.parse.unquote(path)
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(source), path)) if path else source
    if path.startswith("/"):
        return "is absolute: viewers resolve it differently, a relative path the same everywhere"
    if resolved == ".." or resolved.startswith("../"):
        return "leads outside the repository"
    if resolved not in tracked and resolved not in folders:
        return "names no tracked file"
    if anchor and resolved.endswith(".md") and resolved in tracked:
        if urllib.parse.unquote(anchor).lower() not in anchors(read(resolved) or ""):
            return f"{resolved} has no heading #{anchor}"
    return None


def all_files() -> list[str]:
    files = tracked_files()
    if files is None:
        pytest.skip("not a git checkout: no tracked files to check")
    return files


def searched(files: list[str]) -> list[str]:
    """The files whose text is checked: all but the benchmark records."""
    return [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in NOT_SEARCHED)]


def folders_of(files: list[str]) -> set[str]:
    """Every folder that holds a tracked file, at any depth."""
    found = set()
    for name in files:
        parent = posixpath.dirname(name)
        while parent:
            found.add(parent)
            parent = posixpath.dirname(parent)
    return found


def named_paths(line: str, folders: list[str], extensions: tuple[str, ...]) -> list[str]:
    """The paths a line names that start with `../` or with one of the repository's top-level `folders`, and end
    in one of `extensions` (a glob such as docs/*.md, a placeholder such as benchmarks/<name>.py, or a folder
    name inside another path, such as x/docs/y.md, is none)."""
    named = re.compile(r"(?<![\w./*<{$-])((?:(?:\.\./)+|(?:%s)/)[\w./-]*\w\.(?:%s))\b(?![\w/-])"
                       % ("|".join(map(re.escape, folders)), "|".join(extensions)))
    return [match.group(1) for match in named.finditer(line)]


def test_every_relative_link_in_the_markdown_resolves():
    files = all_files()
    tracked, folders = set(files), folders_of(files)
    broken = []
    for source in (f for f in searched(files) if f.endswith(".md")):
        for number, target in links(text_of(source) or ""):
            problem = link_problem(source, target, tracked, folders)
            if problem:
                broken.append(f"{source}:{number}: ({target}) {problem}")
    assert not broken, "links that a clone cannot follow:\n" + "\n".join(broken)


def test_every_repository_path_named_in_a_tracked_file_exists():
    files = all_files()
    tracked = set(files)
    tops = sorted({f.split("/")[0] for f in files if "/" in f})
    missing = []
    for source in (f for f in searched(files) if f not in DATED_LOGS):
        text = text_of(source)
        if text is None:
            continue
        extensions = EXTENSIONS if source.endswith(".md") else ("md",)
        for number, line in enumerate(text.splitlines(), 1):
            for path in named_paths(line, tops, extensions):
                relative = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
                if relative.startswith("../"):
                    missing.append(f"{source}:{number}: {path} (outside the repository)")
                elif path not in tracked and relative not in tracked:
                    missing.append(f"{source}:{number}: {path}")
    assert not missing, "paths named that no tracked file has:\n" + "\n".join(missing)


@pytest.mark.parametrize("target, problem", [
    ("docs/model.md", None),
    ("docs/model.md#the-ladder", None),
    ("#the-model", None),
    ("docs", None),
    ("https://keepachangelog.com/en/1.1.0/", None),
    ("../sh" + "ared/docs/spec.md", "leads outside the repository"),
    ("/docs/model.md", "is absolute: viewers resolve it differently, a relative path the same everywhere"),
    ("docs/" + "nowhere.md", "names no tracked file"),
    ("docs/model.md#nowhere", "docs/model.md has no heading #nowhere"),
])
def test_a_link_resolves_only_to_a_tracked_file_and_heading(target, problem):
    files = ["README.md", "docs/model.md"]
    texts = {"README.md": "# The model\n", "docs/model.md": "# Model\n\n## The ladder\n```\n# not a heading\n```\n"}
    assert link_problem("README.md", target, set(files), folders_of(files), texts.get) == problem


def test_anchors_follow_githubs_rules():
    text = ("# `marn run`: the main job\n## Where this project departs from the paper\n## Step 2a. Parameter "
            "servers\n## Notes\n## Notes\n<a id=\"raw-contract\"></a>\n```\n## not a heading\n```\n")
    assert anchors(text) == {"marn-run-the-main-job", "where-this-project-departs-from-the-paper",
                             "step-2a-parameter-servers", "notes", "notes-1", "raw-contract"}


def test_named_paths_are_the_repository_files_a_line_names():
    outside = "../" + "other/x.md"
    line = (f"see docs/model.md, `tests/testing.py`, (benchmarks/README.md) and {outside}; not docs/*.md, "
            "benchmarks/<name>.py, x/docs/y.md, report.md or marn_tf/")
    assert named_paths(line, ["benchmarks", "docs", "marn_tf", "tests"], EXTENSIONS) == [
        "docs/model.md", "tests/testing.py", "benchmarks/README.md", outside]
    assert named_paths(line, ["benchmarks", "docs", "marn_tf", "tests"], ("md",)) == [
        "docs/model.md", "benchmarks/README.md", outside]
