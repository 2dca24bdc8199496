"""Loads typed config dataclasses from YAML/dicts, with `a.b.c=value` overrides from the CLI.

Every mistake fails before any work starts, with the dotted key that is wrong and what would be
right: an unknown key (with the keys that exist), a value of the wrong type, a missing required key, a key
given twice in one mapping (YAML would keep the last one silently), a number that is NaN or infinite, a YAML
date that is no date (2026-02-30), and, in each section's checks (`check_range`), a number out of its range.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar

import yaml

from marn_tf.storage import files

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


class ConfigKeyError(ConfigError):
    """A ConfigError about one key of a section (`key`, e.g. "hidden_units[1]"), raised by the section's checks:
    `from_dict` names the key with its section ("model.hidden_units[1]"), as the type errors do."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"config key {key!r} {problem}")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Builds dataclass `cls` from `data`, checking keys and types recursively."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key {_join(path, unknown[0])!r}; keys allowed here: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, field in fields.items():
        key = _join(path, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required config key {key!r}")
    try:
        return cls(**kwargs)
    except ConfigKeyError as err:
        raise ConfigKeyError(_join(path, err.key), err.problem) from err
    except ConfigError as err:  # a __post_init__ check: say which section, keep the error's class
        raise type(err)(f"{path}: {err}" if path else str(err)) from err
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path or 'config'}: {err}") from err


def load_yaml(cls: type[T], path: str, overrides: Sequence[str] = (),
              migrate: Callable[[dict], dict] = lambda data: data) -> T:
    """Reads a YAML file into `cls`, then applies `key.path=value` overrides; `migrate` moves keys of an older
    layout to where they live now before the keys are checked."""
    try:
        text = files.read_text(path)  # local, gs://, any Beam file system
    except files.StorageError as err:  # there, but unreadable or not UTF-8 text
        raise ConfigError(f"config file {path} cannot be read: {err}") from err
    if text is None:
        raise ConfigError(f"config file not found: {path}")
    try:
        data = safe_load_unique(text, path) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    return from_dict(cls, migrate(apply_overrides(data, overrides)))


def safe_load_unique(stream: Any, source: str) -> Any:
    """`yaml.safe_load`, refusing a key given twice in one mapping (plain YAML keeps the last silently) and a date
    that is no date (YAML's own constructor raises a bare ValueError for 2026-02-30)."""
    loader = yaml.SafeLoader(stream)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(loader, node, "", source, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_nodes(loader: yaml.SafeLoader, node: yaml.Node, path: str, source: str, seen_nodes: set[int]) -> None:
    if id(node) in seen_nodes:  # an alias: checked where its anchor is (and a recursive one must not loop)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            key_path = path
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key_path = _join(path, key_node.value)
                line = key_node.start_mark.line + 1
                first = first_lines.get((key_node.tag, key_node.value))
                if first is not None:
                    raise ConfigError(f"{source}: config key {key_path!r} is given twice (lines {first} and {line}): "
                                      "YAML would keep the last one silently; keep one")
                first_lines[(key_node.tag, key_node.value)] = line
            _check_nodes(loader, key_node, path, source, seen_nodes)
            _check_nodes(loader, value_node, key_path, source, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_nodes(loader, item, f"{path}[{i}]", source, seen_nodes)
    elif node.tag == "tag:yaml.org,2002:timestamp":
        try:
            loader.construct_yaml_timestamp(node)
        except ValueError as err:
            where = f"{source}: config key {path!r}" if path else source
            raise ConfigError(f"{where} is {node.value}, which is no date ({err}): write a date that exists, "
                              "e.g. 2026-02-28") from err


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Returns a copy of `data` with each `a.b.c=value` set; the value is parsed as YAML."""
    data = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
        try:
            node[keys[-1]] = safe_load_unique(raw, f"override {dotted!r}")
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML: {err}") from err
    return data


def check_choice(key: str, value: str, choices: tuple) -> None:
    """Raises when `value` of `key` is not one of `choices`, naming them."""
    if value not in choices:
        raise ConfigError(f"{key} {value!r} is not one of {', '.join(choices)}")


def check_range(config: Any, keys: Sequence[str], low: float, high: Optional[float] = None, *,
                integer: bool = False, low_open: bool = False, high_open: bool = False, meaning: str = "") -> None:
    """Raises ConfigKeyError for the first of `keys` (fields of the dataclass `config`) whose value, or an entry of a
    list value, is not a number between `low` and `high` (inclusive unless `low_open`/`high_open`; an integer with
    `integer`). An optional key left unset (None) passes. Run in a section's __post_init__, before any work: a zero
    or negative width would otherwise reach a TensorFlow op and abort the process there, or train nonsense.
    `meaning` says what the key is, for the message."""
    need = _range_text(low, high, integer, low_open, high_open) + (f" ({meaning})" if meaning else "")
    for key in keys:
        value = getattr(config, key)
        is_list = isinstance(value, (list, tuple))
        for name, entry in ([(f"{key}[{i}]", v) for i, v in enumerate(value)] if is_list else [(key, value)]):
            if entry is None and not is_list:
                continue
            number = isinstance(entry, int if integer else (int, float)) and not isinstance(entry, bool)
            inside = number and (low < entry if low_open else low <= entry) and (
                high is None or (entry < high if high_open else entry <= high))  # NaN is inside no range
            if not inside:
                raise ConfigKeyError(name, f"is {entry!r}: {'each' if is_list else 'it'} must be {need}")


def _range_text(low: float, high: Optional[float], integer: bool, low_open: bool, high_open: bool) -> str:
    kind = "an integer" if integer else "a number"
    if high is None:
        if integer and low == 1 and not low_open:
            return "a positive integer"
        return f"{kind} {'>' if low_open else '>='} {low}"
    return f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def to_dict(config: Any) -> dict:
    """The plain-data form of a config dataclass (what `from_dict` reads back)."""
    return dataclasses.asdict(config)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_FLOAT_LITERAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
        return [_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value.strip()):
        # YAML 1.1 (PyYAML) reads 3e-4 and 1E5, without a dot, as strings: they are the common way to write a rate.
        value = float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        # `.nan` passes every range check (all comparisons with NaN are false) and poisons training.
        raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
    if hint is str and not isinstance(value, str):
        # YAML reads 2026-01-31 as a date; config dates are kept as ISO strings.
        if hasattr(value, "isoformat"):
            return value.isoformat()
        raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
    if hint in (int, float, bool) and (type(value) is not hint):
        raise ConfigError(f"config key {key!r} must be {hint.__name__}, got {value!r}")
    return value
