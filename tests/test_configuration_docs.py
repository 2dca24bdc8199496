"""docs/configuration.md is what scripts/config_reference.py writes from the config dataclasses, lists every key a
config holds, and gives each key the default a config file that leaves it out gets."""
import importlib.util
import os
import re
import sys

import yaml

from marn_tf.config import Config
from tests.testing import REPO

PAGE = os.path.join(REPO, "docs", "configuration.md")
# Keys whose null default the config resolves on loading (the model's structure, from `variant` or the rung).
RESOLVED_ON_LOAD = {"model.variant", "model.fusion", "model.discriminators", "model.sequence_encoder"}


def _script():
    spec = importlib.util.spec_from_file_location("config_reference",
                                                  os.path.join(REPO, "scripts", "config_reference.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _rows() -> dict[str, tuple[str, str, str]]:
    """{key: (type, default, meaning)} from the page's tables."""
    with open(PAGE, encoding="utf-8") as f:
        text = f.read()
    return {key: (kind, default.strip("`"), meaning)
            for key, kind, default, meaning in re.findall(r"^\| `([\w.]+)` \| (.*?) \| (.*?) \| (.*) \|$", text,
                                                          re.MULTILINE)}


def _leaf_keys(data: dict, prefix: str = "") -> dict:
    """{dotted key: value} of every leaf of a config's plain-data form."""
    leaves = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in ("model.hash_buckets",):
            leaves.update(_leaf_keys(value, name + "."))
        else:
            leaves[name] = value
    return leaves


def _loaded_with_defaults() -> Config:
    """A config that sets only the required keys (and names the optional user table, so its keys exist)."""
    return Config.from_dict({"inputs": {"events": {"path": "e.jsonl"}, "items": {"path": "i.csv"},
                                        "users": {"path": "u.csv"}},
                             "split": {"train_end": "2026-01-10", "valid_end": "2026-01-12"}})


def test_the_page_is_what_the_script_writes(tmp_path):
    script = _script()
    with open(PAGE, encoding="utf-8") as f:
        assert f.read() == script.render(), "docs/configuration.md is stale: run python scripts/config_reference.py"
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration\n")
    assert script.main(["--check", "--output", str(stale)]) == 1
    assert stale.read_text() == "# Configuration\n"  # --check writes nothing
    assert script.main(["--output", str(stale)]) == 0 and script.main(["--check", "--output", str(stale)]) == 0


def test_every_key_a_config_holds_is_listed_with_a_meaning():
    rows = _rows()
    keys = _leaf_keys(_loaded_with_defaults().to_dict())
    assert sorted(set(keys) - set(rows)) == []
    assert [key for key, (_, _, meaning) in rows.items() if not meaning.strip()] == []


def test_each_listed_default_is_what_a_config_that_leaves_the_key_out_gets():
    rows = _rows()
    loaded = _leaf_keys(_loaded_with_defaults().to_dict())
    wrong = {key: (default, loaded[key]) for key, (_, default, _) in rows.items()
             if key in loaded and default != "required" and key not in RESOLVED_ON_LOAD
             and yaml.safe_load(default) != loaded[key]}
    assert wrong == {}
    assert {key for key, (_, default, _) in rows.items() if default == "required"} == {
        "inputs.events", "inputs.events.path", "inputs.items", "inputs.items.path", "inputs.users.path",
        "split.train_end", "split.valid_end"}
