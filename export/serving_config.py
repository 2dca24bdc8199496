"""`<base>/models.config`, the TF Serving `--model_config_file` that `marn export` keeps beside its versions.

The file may be the user's: it may list other models, with their version policies and labels. So it is never
rewritten: it is read as TF Serving's own `ModelServerConfig` text proto, and an exported model it does not list
yet gets its entry inserted before the list's closing brace, leaving every byte that was there (comments included).
An entry it has for the model already is kept as written (the base path, policy and labels are the user's). A file
that does not parse as a `ModelServerConfig`, or that configures models otherwise (`custom_model_config`), is
refused, naming it: `check` says so before anything is exported. Where there is no file, it is written listing
every model under the base directory.
"""
from __future__ import annotations

import logging
from typing import Iterable, Optional

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2 as pb

from marn_tf.storage import files
from marn_tf.storage.errors import OwnershipError

log = logging.getLogger(__name__)
MODELS_CONFIG = "models.config"
HEADER = "# TF Serving model config (text proto): tensorflow_model_server --model_config_file=<this file>\n"


def entry(name: str, serving_base: str) -> pb.ModelConfig:
    """The entry of a model exported under `<base>/<name>`, with `<base>` mounted at `serving_base`."""
    return pb.ModelConfig(name=name, base_path=f"{serving_base.rstrip('/')}/{name}", model_platform="tensorflow")


def _parse(text: str, path: str) -> pb.ModelServerConfig:
    """The file's config; refused, naming it, unless it is a model list marn can add to."""
    try:
        config = text_format.Parse(text, pb.ModelServerConfig())
    except text_format.ParseError as err:
        raise OwnershipError(f"{path} is not a TF Serving model config marn can read ({err}): marn adds its model to "
                             "that file and never overwrites it. Fix the file, or export to another --output") from err
    if config.HasField("custom_model_config"):
        raise OwnershipError(f"{path} configures its models with custom_model_config, not model_config_list: marn "
                             "cannot add its model there and never overwrites the file. Add the model yourself, or "
                             "export to another --output")
    return config


def check(base_dir: str) -> None:
    """Read-only, before an export: refuses a `models.config` that `merge` could not add to."""
    path = files.join(base_dir, MODELS_CONFIG)
    text = files.read_text(path)
    if text is not None:
        _parse(text, path)


def _closing_brace(text: str) -> Optional[int]:
    """The offset of the last `}` or `>` outside comments and strings: in a parsed ModelServerConfig holding a
    model_config_list (its only field), the one that closes the list."""
    last, i = None, 0
    while i < len(text):
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif c in "\"'":
            i += 1
            while i < len(text) and text[i] != c:
                i += 2 if text[i] == "\\" else 1
        elif c in "}>":
            last = i
        i += 1
    return last


def _with_entry(text: str, config: pb.ModelServerConfig, new: pb.ModelConfig) -> Optional[str]:
    """`text` with `new` added to its list; None when the place to insert it cannot be found."""
    lines = text_format.MessageToString(new, indent=4).rstrip("\n")
    block = f"  config {{\n{lines}\n  }}\n"
    if not config.HasField("model_config_list"):  # an empty file, or comments only
        return text + ("" if not text or text.endswith("\n") else "\n") + f"model_config_list {{\n{block}}}\n"
    brace = _closing_brace(text)
    if brace is None:
        return None
    before = text[:brace]
    return before + ("" if before.endswith("\n") else "\n") + block + text[brace:]


def _write_new(path: str, names: Iterable[str], serving_base: str) -> None:
    entries = "".join(f"  config {{\n{text_format.MessageToString(entry(n, serving_base), indent=4)}  }}\n"
                      for n in sorted(names))
    files.write_text(path, f"{HEADER}model_config_list {{\n{entries}}}\n")


def _configs(text: str) -> Optional[list]:
    """The model entries `text` lists; None when it does not parse."""
    try:
        return list(text_format.Parse(text, pb.ModelServerConfig()).model_config_list.config)
    except text_format.ParseError:
        return None


def merge(base_dir: str, model_name: str, serving_base: str, all_models: Iterable[str]) -> str:
    """Adds `model_name` to `<base_dir>/models.config` (made listing `all_models` when missing); returns its path."""
    path = files.join(base_dir, MODELS_CONFIG)
    text = files.read_text(path)
    if text is None:
        _write_new(path, set(all_models) | {model_name}, serving_base)
        return path
    config = _parse(text, path)
    wanted = entry(model_name, serving_base)
    listed = {c.name: c for c in config.model_config_list.config}
    if model_name in listed:
        if listed[model_name].base_path != wanted.base_path:
            log.warning("%s lists %s at %s, kept as written (this export is under %s)", path, model_name,
                        listed[model_name].base_path, wanted.base_path)
        return path
    merged = _with_entry(text, config, wanted)
    if merged is None or _configs(merged) != list(config.model_config_list.config) + [wanted]:
        raise OwnershipError(f"marn could not add {model_name} to {path} without changing what is there; the file "
                             f"is left as it was. Add an entry for {wanted.base_path} yourself")
    files.write_text(path, merged)
    return path
