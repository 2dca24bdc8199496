"""The layout holds: imports run one way through the layers of docs/architecture.md, no import cycle (imports
inside functions included), no module over 400 lines, and one import name (`marn_tf`: pipelines/ and export/
install as marn_tf.pipelines and marn_tf.export). A new module must be given a layer here."""
import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ("marn_tf", "pipelines", "export")  # folders of the source tree
PACKAGES = {"marn_tf": "marn_tf", "pipelines": "marn_tf.pipelines", "export": "marn_tf.export"}  # their import names
MAX_LINES = 400
# Lowest first: a module may import its own layer and those below it, never one above.
LAYERS = [
    ("foundation", ["marn_tf", "marn_tf.keras_env", "marn_tf.config_loader", "marn_tf.storage"]),
    ("contract", ["marn_tf.schema", "marn_tf.example_codec"]),
    ("config", ["marn_tf.model_config", "marn_tf.train_config", "marn_tf.run_config", "marn_tf.presets",
                "marn_tf.config"]),
    ("data and layers", ["marn_tf.data", "marn_tf.layers"]),
    ("tasks and models", ["marn_tf.tasks", "marn_tf.models"]),
    ("training and evaluation", ["marn_tf.training", "marn_tf.evaluation"]),
    ("pipelines and export", ["marn_tf.pipelines", "marn_tf.export"]),
    ("app", ["marn_tf.workflow", "marn_tf.cli"]),
]


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for root in SOURCES:
        for path in sorted((REPO / root).rglob("*.py")):
            name = ".".join((PACKAGES[root],) + path.relative_to(REPO / root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def layer_of(module: str) -> int:
    """The layer of the longest prefix that names the module or a package above it."""
    best, level = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            below = module.startswith(prefix + ".") and prefix != "marn_tf"  # the root package is its __init__ only
            if (module == prefix or below) and len(prefix) > best:
                best, level = len(prefix), index
    return level


def imports(path: pathlib.Path, known: dict) -> list[tuple[str, int]]:
    """(imported module of ours, line) for every import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                     for alias in node.names]
        else:
            continue
        found += [(name, node.lineno) for name in names if name.split(".")[0] in SOURCES]  # ours, or a bare name
    return found


def test_nothing_imports_the_bare_source_folder_names():
    """`import pipelines` would work from a source checkout (the repository on sys.path) and fail installed."""
    known = modules()
    bare = [f"{path.relative_to(REPO)}:{line} imports {name}"
            for folder in SOURCES + ("tests", "benchmarks", "scripts")
            for path in sorted((REPO / folder).rglob("*.py"))
            for name, line in imports(path, known) if name.split(".")[0] in ("pipelines", "export")]
    assert bare == []


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == []


def test_imports_never_go_up_a_layer():
    known = modules()
    upward = []
    for module, path in known.items():
        for target, line in imports(path, known):
            if layer_of(target) is not None and layer_of(target) > layer_of(module):
                upward.append(f"{path.relative_to(REPO)}:{line} ({LAYERS[layer_of(module)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert upward == []


def test_no_import_cycles():
    known = modules()
    graph = {m: {t for t, _ in imports(p, known) if t in known and t != m} for m, p in known.items()}
    cycles, state = [], {}

    def visit(module, stack):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("root", SOURCES)
def test_no_module_over_400_lines(root):
    long = {str(p.relative_to(REPO)): n for p in sorted((REPO / root).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
    """The walker finds imports inside functions, which is where the cycles used to hide."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from marn_tf.workflow import main_job\n")
    assert imports(source, modules()) == [("marn_tf.workflow.main_job", 2)]
    assert layer_of("marn_tf.workflow.main_job") > layer_of("marn_tf.layers.item_encoder")
