"""Writes docs/configuration.md, the reference of every config key (type, default, meaning), from the config
dataclasses that `marn_tf.config.Config` is made of, so that the page cannot drift from the code.

    python scripts/config_reference.py          # writes docs/configuration.md
    python scripts/config_reference.py --check  # exits 1, writing nothing, when the file differs

A key's meaning is read from its dataclass's source: the comment on the key's line, continued by the comment
lines right below it; a key with no comment on its line takes the comment lines right above it instead. A class
whose docstring has an `Attributes:` section gives its keys' meanings there. A section's text is its class's
docstring. A key without a meaning, or a section without a docstring, is an error: the page explains every key.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import pathlib
import re
import sys
import textwrap
import tokenize
import typing
from typing import Any, Iterator

from marn_tf.config import Config

REPO = pathlib.Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "configuration.md"
REQUIRED = "required"

HEADER = """\
# Configuration

<!-- Written by `python scripts/config_reference.py` from the config dataclasses: edit those, not this file. -->

One YAML file configures a run: where the raw data is and what its fields are called, what the pipeline
makes of it, the model, its training, the devices it runs on, and what `marn run` does around them. Every
command that takes `--config` reads it; `--set section.key=value` (repeatable) overrides a key, and
`--preset NAME` applies a registered set of overrides first (`marn presets` lists them). A key left out takes
its default; `inputs` and `split` have required keys. An unknown key, a value of the wrong type or out of its
range fails before any work, naming the key.

A minimal file:

```yaml
inputs:
  events: {path: data/events.jsonl}
  items: {path: data/items.csv}
split: {train_end: "2026-01-10", valid_end: "2026-01-12"}
```

A relative `inputs` path is read from the config file's folder. [The pipeline](pipeline.md) describes the raw
tables these keys name, [the model](model.md) what the `model` keys choose.
"""


@dataclasses.dataclass
class Key:
    """One row of the reference: the dotted key, its type and default as a YAML file writes them, its meaning."""

    name: str
    type: str
    default: str
    meaning: str


def comment_meanings(cls: type) -> dict[str, str]:
    """{field: its meaning} from the comments beside, below or above each field in `cls`'s source."""
    source = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(source).body[0].body
    lines = source.splitlines()
    trailing: dict[int, str] = {}  # line number -> the comment after code on it
    alone: dict[int, str] = {}  # line number -> a comment that is the whole line
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            text = token.string.lstrip("#").strip()
            (alone if not lines[row - 1][:col].strip() else trailing)[row] = text
    fields = {node.lineno: node for node in body if isinstance(node, ast.AnnAssign)}

    def block(start: int, step: int) -> list[int]:
        """The run of whole-line comments from line `start` on, going by `step` (1: down, -1: up)."""
        rows = []
        while start in alone:
            rows.append(start)
            start += step
        return rows if step > 0 else rows[::-1]

    meanings = {}
    for node in fields.values():
        own = [trailing[row] for row in range(node.lineno, node.end_lineno + 1) if row in trailing]
        if own:
            below = block(node.end_lineno + 1, 1)
            # a run that ends right above a field with no comment of its own is that field's, not a continuation
            after = below[-1] + 1 if below else None
            if after in fields and not any(r in trailing for r in range(after, fields[after].end_lineno + 1)):
                below = []
            text = own + [alone[row] for row in below]
        else:
            text = [alone[row] for row in block(node.lineno - 1, -1)]
        if text:
            meanings[node.target.id] = " ".join(text)
    return meanings


def attribute_meanings(cls: type) -> dict[str, str]:
    """{field: its meaning} from an `Attributes:` section of `cls`'s docstring (Google style), if it has one."""
    doc = inspect.getdoc(cls) or ""
    if "\nAttributes:\n" not in doc:
        return {}
    section = textwrap.dedent(doc.split("\nAttributes:\n", 1)[1])
    entries = re.findall(r"^(\w+): (.*?)(?=^\w+: |\Z)", section, re.MULTILINE | re.DOTALL)
    return {name: " ".join(text.split()) for name, text in entries}


def class_text(cls: type) -> str:
    """`cls`'s docstring without its `Attributes:` section."""
    if not cls.__doc__ or cls.__doc__.startswith(cls.__name__ + "("):
        # dataclasses write a signature as the docstring of a class without one
        raise ValueError(f"{cls.__qualname__} has no docstring: write one that says what its section configures")
    return inspect.getdoc(cls).split("\nAttributes:\n", 1)[0].strip()


def section_class(hint: Any) -> type | None:
    """The dataclass a field holds (`Optional[X]` included), or None for a plain value."""
    candidates = [arg for arg in typing.get_args(hint) if arg is not type(None)] if typing.get_args(hint) else [hint]
    classes = [c for c in candidates if dataclasses.is_dataclass(c)]
    return classes[0] if classes else None


def yaml_value(value: Any) -> str:
    """`value` as a YAML config file writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def type_text(annotation: str) -> str:
    """A field's annotation as a reader of YAML takes it: `Optional[X]` is `X or null`, `Any` is `any`."""
    optional = re.fullmatch(r"Optional\[(.*)\]", annotation)
    if optional:
        return f"{type_text(optional.group(1))} or null"
    return "any" if annotation == "Any" else annotation


def default_of(field: dataclasses.Field) -> Any:
    """The field's default value, or REQUIRED."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return REQUIRED


def keys(cls: type, prefix: str) -> Iterator[Key]:
    """Every key of section `cls` under `prefix`, a nested section's keys right after its own row."""
    meanings = {**comment_meanings(cls), **attribute_meanings(cls)}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        name = f"{prefix}.{field.name}"
        if field.name not in meanings:
            raise ValueError(f"{cls.__qualname__}.{field.name} ({name}) has no meaning: write a comment beside it")
        default = default_of(field)
        nested = section_class(hints[field.name])
        value = REQUIRED if default is REQUIRED else yaml_value(default if nested is None or default is None else {})
        if nested is not None:
            yield Key(name, "section" + (" or null" if default is None else ""), value, meanings[field.name])
            yield from keys(nested, name)
        else:
            yield Key(name, type_text(str(field.type)), value, meanings[field.name])


def cell(text: str) -> str:
    """Text for a Markdown table cell: pipes escaped, one line."""
    return " ".join(text.replace("|", "\\|").split())


def render() -> str:
    """The whole page: the header, then per section its docstring and a table of its keys."""
    parts = [HEADER]
    hints = typing.get_type_hints(Config)
    for field in dataclasses.fields(Config):
        cls = section_class(hints[field.name])
        parts.append(f"\n## `{field.name}`\n\n{class_text(cls)}\n")
        parts.append("\n| key | type | default | meaning |\n|---|---|---|---|\n")
        for key in keys(cls, field.name):
            default = key.default if key.default == REQUIRED else f"`{cell(key.default)}`"
            parts.append(f"| `{key.name}` | {cell(key.type)} | {default} | {cell(key.meaning)} |\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs, writing nothing")
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} differs from what scripts/config_reference.py writes: run it", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
