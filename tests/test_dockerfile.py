"""The Dockerfile, checked without a Docker engine: what it copies exists, its versions are the pins, the serve
image runs as a non-root user with a health check, and it serves what `marn export` writes where `make demo`
writes it."""
import fnmatch
import os
import re

from marn_tf.export.saved_model import MODELS_CONFIG, SERVING_BASE
from tests.testing import REPO


def _read(name):
    with open(os.path.join(REPO, name)) as f:
        return f.read()


def _stages():
    """{target: [instruction lines]} with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", _read("Dockerfile"))
    stages, current = {"": []}, ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\w+)", line, re.IGNORECASE)
        if match:
            current = match.group(1)
            stages[current] = []
        stages[current].append(line)
    return stages


def _args():
    return dict(re.findall(r"^ARG (\w+)=(\S+)", _read("Dockerfile"), re.MULTILINE))


def _pins():
    return dict(line.split("==") for line in _read("constraints.txt").splitlines() if "==" in line)


def test_base_images_match_the_pins():
    args, pins = _args(), _pins()
    assert args["TF_VERSION"] == pins["tensorflow"]
    assert args["TF_SERVING_VERSION"] == pins["tensorflow-serving-api"]
    stages = _stages()
    assert stages["train"][0] == "FROM tensorflow/tensorflow:${TF_VERSION} AS train"
    assert stages["serve"][0] == "FROM tensorflow/serving:${TF_SERVING_VERSION} AS serve"
    assert any("pip install" in line and "-c constraints.txt" in line for line in stages["train"])


def _ignored(path):
    patterns = [p for p in _read(".dockerignore").splitlines() if p and not p.startswith("#")]
    ignored = False
    for pattern in patterns:  # later lines win, as in Docker
        negate = pattern.startswith("!")
        if fnmatch.fnmatch(path, pattern.lstrip("!")) or fnmatch.fnmatch(path.split("/")[0], pattern.lstrip("!")):
            ignored = not negate
    return ignored


def test_everything_copied_exists_and_is_in_the_build_context():
    args = _args()
    for stage, lines in _stages().items():
        for line in lines:
            if not line.startswith("COPY") or "--from" in line:
                continue
            sources = [s for s in line.split()[1:-1] if not s.startswith("--")]
            for source in sources:
                source = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], source).rstrip("/")
                if source == args["EXPORT_DIR"].rstrip("/"):
                    continue  # written by `marn export`: see the next test
                assert os.path.exists(os.path.join(REPO, source)), f"{stage}: COPY {source} does not exist"
                assert not _ignored(source), f"{stage}: {source} is excluded by .dockerignore"
    assert not _ignored(args["EXPORT_DIR"])


def test_serve_image_serves_the_demo_export():
    args, serve = _args(), " ".join(_stages()["serve"])
    from marn_tf.workflow.run_directory import EXPORT_DIR

    demo_dir = re.search(r"^DEMO_DIR \?= (\S+)", _read("Makefile"), re.MULTILINE).group(1)
    assert re.search(r"marn demo --output \$\(DEMO_DIR\)", _read("Makefile"))
    assert args["EXPORT_DIR"] == f"{demo_dir}/{EXPORT_DIR}"  # where `marn run` exports the main model
    assert "COPY --chown=tfserving ${EXPORT_DIR}/ /models/" in serve
    assert f"${{EXPORT_DIR}}/ {SERVING_BASE}/" in serve  # models.config's base paths are under SERVING_BASE
    assert f"--model_config_file={SERVING_BASE}/{MODELS_CONFIG}" in serve and "--enable_model_warmup=true" in serve
    assert re.search(r"USER (?!root)\w+", serve) and "HEALTHCHECK" in serve and "EXPOSE 8500 8501" in serve
