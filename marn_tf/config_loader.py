"""Loads typed config dataclasses from YAML/dicts, with `a.b.c=value` overrides from the CLI.

Every mistake fails before any work starts, with the dotted key that is wrong and what would be
right: an unknown key (with the keys that exist), a value of the wrong type, a missing required key, a key
given twice in one mapping (YAML would keep the last one silently), a number that is NaN or infinite.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, Callable, Mapping, Sequence, TypeVar

import yaml

from marn_tf.storage import files

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


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
    """`yaml.safe_load`, refusing a key given twice in one mapping (plain YAML keeps the last silently)."""
    loader = yaml.SafeLoader(stream)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, "", source, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: yaml.Node, path: str, source: str, seen_nodes: set[int]) -> None:
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
            _refuse_duplicate_keys(value_node, key_path, source, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{path}[{i}]", source, seen_nodes)


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
