"""The results report: every section in the HTML, every plot a real PNG, the page rendered by headless Chromium."""
import html.parser
import io
import os
import shutil
import subprocess

import numpy as np
import pytest

from marn_tf.workflow.results_report import ladder_figure, ladder_table
from marn_tf.workflow.run_directory import REPORT_DIR
from tests.testing import TINY_RUN, write_config

pytestmark = pytest.mark.integration
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ["overview", "pipeline", "training-curves", "ladder", "modality-weights", "discriminators", "slices",
            "export"]
# Flags for a sandboxed, offline machine (as root, no network, no D-Bus).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
# Appended to a copy of the page: after load, the body says how many images there are and which failed to decode.
IMAGE_PROBE = ("<script>window.addEventListener('load', () => { const images = [...document.images]; "
               "document.body.dataset.images = images.length; document.body.dataset.broken = images.filter("
               "i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')).join(','); });</script>")


class ReportParser(html.parser.HTMLParser):
    """Section ids with their headings and images, in document order."""

    def __init__(self):
        super().__init__()
        self.sections, self.in_heading = [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append({"id": attrs.get("id"), "heading": "", "images": [], "tables": 0})
        elif self.sections and tag == "img":
            self.sections[-1]["images"].append(attrs["src"])
        elif self.sections and tag == "table":
            self.sections[-1]["tables"] += 1
        self.in_heading = tag == "h2"

    def handle_data(self, data):
        if self.in_heading and self.sections:
            self.sections[-1]["heading"] += data

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_heading = False


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("this test needs Debian's chromium package: `apt-get install chromium` (`make test` installs it)")
    return found


@pytest.fixture(scope="module")
def report(flow_run):
    _, run_dir, _, _ = flow_run
    with open(os.path.join(run_dir, "report.html")) as f:
        page = f.read()
    parser = ReportParser()
    parser.feed(page)
    return run_dir, page, parser.sections


def test_the_report_has_every_section_with_its_plot_and_tables(report):
    run_dir, _, sections = report
    assert [s["id"] for s in sections] == SECTIONS
    with_plots = {"pipeline", "training-curves", "ladder", "modality-weights", "discriminators", "slices"}
    for section in sections:
        assert section["heading"].strip(), section["id"]
        if section["id"] in with_plots:
            assert len(section["images"]) == 1, section["id"]
        assert section["tables"] >= (0 if section["id"] == "discriminators" else 1), section["id"]
    for src in (src for s in sections for src in s["images"]):
        assert src.startswith(REPORT_DIR + "/")
        with open(os.path.join(run_dir, src), "rb") as f:
            assert f.read(8) == PNG_MAGIC, src


def test_the_report_shows_the_runs_figures(report, flow_run):
    summary = flow_run[0]
    _, page, _ = report
    assert f"{summary['main']['auc']:.4f}" in page  # the main model's AUC in the overview
    reasons = summary["pipeline"]["sources"]["events"]["dead_letter_reasons"]
    assert reasons and all(f"<td>{reason}</td><td>{count}</td>" in page for reason, count in reasons.items())
    assert all(c["name"] in page for c in summary["export"]["checks"])
    floor = summary["floor"]  # the example features carry click rates: the floor is measured
    floor_row = f"<tr><td>no-model floor</td><td>–</td><td>{floor['auc']:.4f}</td>"
    assert page.count(floor_row) == 2  # in the overview and in the ladder's table
    assert f"<td>{summary['main']['auc'] - floor['auc']:.4f}</td>" in page  # the main model's AUC - floor


def ladder_rows_by_hand() -> list[dict]:
    return [{"variant": "concat", "seeds": [1, 2], "auc": (0.72, 0.01), "gauc": (0.67, 0.01),
             "auc_values": [0.71, 0.73], "gauc_values": [0.66, 0.68]},
            {"variant": "marn", "seeds": [1, 2], "auc": (0.75, 0.02), "gauc": (0.70, 0.01),
             "auc_values": [0.73, 0.77], "gauc_values": [0.69, 0.71]}]


def test_the_ladder_plot_draws_the_floor_as_horizontal_lines():
    from marn_tf.evaluation.report import pyplot

    fig = ladder_figure(ladder_rows_by_hand(), {"auc": 0.70, "gauc": 0.66, "logloss": 0.6, "examples": 10})
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}
    assert list(lines["no-model floor (AUC)"]) == [0.70, 0.70] and list(lines["no-model floor (GAUC)"]) == [0.66, 0.66]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "no-model floor (AUC)" in legend
    pyplot().close(fig)
    fig = ladder_figure(ladder_rows_by_hand(), None)
    assert not [line for line in fig.axes[0].get_lines() if "floor" in line.get_label()]
    pyplot().close(fig)


def test_the_ladder_table_starts_with_the_floor_and_shows_each_variants_auc_over_it():
    table = ladder_table(ladder_rows_by_hand(), {"auc": 0.70, "gauc": 0.66, "logloss": 0.6, "examples": 10})
    rows = [r.split("</td><td>") for r in table.split("<tr><td>")[1:]]
    assert rows[0][:3] == ["no-model floor", "–", "0.7000"]
    assert rows[1][:5] == ["concat", "1, 2", "0.7200", "0.0100", "0.0200"]
    assert rows[2][:5] == ["marn", "1, 2", "0.7500", "0.0200", "0.0500"]


def test_headless_chromium_renders_the_report_with_every_image_decoded(report, tmp_path):
    run_dir, page, sections = report
    shutil.copytree(os.path.join(run_dir, REPORT_DIR), tmp_path / REPORT_DIR)
    probed = tmp_path / "report.html"
    probed.write_text(page.replace("</body>", IMAGE_PROBE + "</body>"))
    common = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(common + ["--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    images = sum(len(s["images"]) for s in sections)
    assert f'data-images="{images}"' in dom.stdout and 'data-broken=""' in dom.stdout, dom.stdout[:500]
    for section in SECTIONS:
        assert f'id="{section}"' in dom.stdout

    shot = tmp_path / "shot.png"
    done = subprocess.run(common + ["--window-size=1200,2400", f"--screenshot={shot}", probed.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[:2] == (2400, 1200)
    assert np.std(pixels[..., :3]) > 0.05  # text, tables and plots, not a blank page


def test_a_run_of_the_main_model_only_reports_what_it_has(raw_dataset, tmp_path):
    """No ladder, no export, a variant without discriminators: those sections say so instead of failing."""
    from marn_tf.workflow.main_job import run

    tiny = [o for o in TINY_RUN if not o.startswith(("model.common_units", "model.discriminator_hidden"))]
    config = write_config(tmp_path / "c.yaml", raw_dataset[0],
                          tiny + ["run.ladder=[]", "run.export=false", "model.variant=concat"])  # keys concat reads
    summary = run(config, output=str(tmp_path / "run"), progress=False, stream=io.StringIO())
    assert summary["ladder"] == {} and summary["export"] is None and summary["main"]["d1_accuracy"] is None
    parser = ReportParser()
    with open(tmp_path / "run" / "report.html") as f:
        page = f.read()
    parser.feed(page)
    assert [s["id"] for s in parser.sections] == SECTIONS
    assert "No ladder in this run" in page and "Not exported" in page and "has no discriminators" in page
    assert sorted(os.listdir(tmp_path / "run" / REPORT_DIR)) == [
        "dead_letters.png", "modality_weights_by_category.png", "slices.png", "training_curves.png"]
