"""docs/scale_out.md's Dataflow / Flink / Spark command lines: our CLI hands every Beam option to Beam intact,
and Beam knows each one (a misspelt option would be dropped by Beam with only a warning)."""
import os
import re
import shlex

import pytest

from marn_tf import cli
from marn_tf.pipelines.beam_options import pipeline_options
from tests.testing import REPO

BEAM_COMMANDS = ("preprocess", "run", "score")


def documented_commands() -> list[list[str]]:
    with open(os.path.join(REPO, "docs", "scale_out.md")) as f:
        text = f.read()
    blocks = re.findall(r"```\n(.*?)```", text, re.DOTALL)
    commands = []
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            if not command.startswith("marn "):
                continue  # comments, other programs
            words = shlex.split(command.split(" #")[0])
            if words[:1] == ["marn"] and words[1] in BEAM_COMMANDS and any(w.startswith("--runner=") for w in words):
                commands.append(words[1:])
    return commands


def test_the_document_has_a_command_line_for_each_runner():
    runners = {w.split("=", 1)[1] for c in documented_commands() for w in c if w.startswith("--runner=")}
    assert runners == {"DataflowRunner", "FlinkRunner", "SparkRunner"}


@pytest.mark.parametrize("argv", documented_commands(), ids=lambda argv: " ".join(argv[:1] + [
    w for w in argv if w.startswith("--runner=")]))
def test_documented_beam_options_reach_beam_and_beam_knows_them(argv):
    args, beam_args = cli.build_parser().parse_known_args(argv)
    assert args.command == argv[0]
    assert beam_args and all(a.startswith("--") and "=" in a for a in beam_args)
    options = pipeline_options(beam_args, num_workers=2).get_all_options(drop_default=True)
    for arg in beam_args:
        name, value = arg[2:].split("=", 1)
        assert name in options, f"Beam does not know --{name}"
        assert value in (options[name] if isinstance(options[name], list) else [str(options[name])])
