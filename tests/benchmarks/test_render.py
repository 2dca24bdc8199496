"""benchmarks/render.py fills the documentation's rendered blocks from the records in benchmarks/results/, and its
check fails when a block differs from them; benchmarks/record.py writes those records."""
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import record  # noqa: E402  (benchmarks/ is not a package)
import render  # noqa: E402
import serving  # noqa: E402
import train  # noqa: E402


def test_every_rendered_block_of_the_repository_matches_the_records():
    """What `python benchmarks/render.py --check` checks: every block of every markdown file is what the records
    in benchmarks/results/ render to (a missing record fails too)."""
    assert render.run(REPO, check=True) == []


# -- small records -----------------------------------------------------------------------------------------
def write(root, name: str, kind: str, figures: dict, date: str, command: str = "python benchmarks/x.py") -> str:
    made = record.make_record(kind, figures, command)
    made["date"] = date
    path = root / "benchmarks" / "results" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(made))
    return f"benchmarks/results/{name}"


def quality(world: str, aucs: dict, floor: float | None = 0.70) -> dict:
    runs = {model: [{"seed": s + 1, "validation_auc": a - 0.01, "test_auc": a, "test_gauc": a - 0.05,
                     "best_step": 100} for s, a in enumerate(values)] for model, values in aucs.items()}
    return {"worlds": {world: {"floor_auc": floor, "oracle_auc": None, "runs": runs}}, "targets": []}


def page(root, *names: str, file: str = "README.md") -> str:
    text = "# Page\n\n" + "\n\n".join(f"<!-- rendered: {n} -->\n<!-- end rendered: {n} -->" for n in names) + "\n"
    (root / file).parent.mkdir(parents=True, exist_ok=True)
    (root / file).write_text(text)
    return text


def block(text: str, name: str) -> str:
    return next(m["body"] for m in render.BLOCK.finditer(text) if m["name"] == name)


def speed(quick: bool = False) -> dict:
    """A run_all record's figures: three repeats of each benchmark."""
    mr = record.median_range
    pipeline = {"repeats": 3, "target_events_per_s": 20000,
                "best": {"events": 1000, "workers": 2, "events_per_s": mr([20000, 30000, 25000]),
                         "wall_s": mr([1, 2, 3]), "peak_tree_mb": mr([9, 9, 9]), "peak_runner_mb": mr([5, 6, 7]),
                         "peak_worker_mb": mr([3, 4, 5])}}
    pipeline["runs"] = [pipeline["best"]]
    training = {"device": "CPU: test", "batch_size": 1024, "steps": 20, "warmup": 3, "repeats": 3,
                "models": {"MARN (width 32)": {"examples_per_second": mr([8000, 9000, 10000]),
                                               "peak_memory_mb": mr([1000, 1100, 1200]), "parameters": 5}},
                "marn_over_dien": mr([2, 2.5, 3]), "marn_over_din": mr([1, 1.2, 1.4]),
                "input_over_trainer": mr([10, 11, 12])}
    shape = lambda p50, p99: {"p50_ms": mr(p50), "p99_ms": mr(p99)}  # noqa: E731
    runs = {name: [{"ranking": {"p99_ms": p}} for p in p99s] for name, p99s in
            (("MARN", [4.0, 5.0, 6.0]), ("deepctr DIN (peer)", [4.0, 4.0, 4.0]))}
    serving = {"calls": 300, "warmup": 20, "repeats": 3, "runs": runs, "median": {
        name: {"load_s": mr([1, 1, 1]), "ranking": shape([3, 3, 3], p99s), "batch": shape([10, 11, 12], [20, 21, 22])}
        for name, p99s in (("MARN", [4.0, 5.0, 6.0]), ("deepctr DIN (peer)", [4.0, 4.0, 4.0]))}}
    part = lambda kind, figures: {**record.make_record(kind, figures, f"python benchmarks/{kind}.py"),  # noqa: E731
                                  "date": "2026-12-07T10:00:00+00:00"}
    return {"quick": quick, "pipeline": part("pipeline", pipeline), "training": part("training", training),
            "serving": part("serving", serving)}


# -- the record writer -------------------------------------------------------------------------------------
def test_a_record_holds_its_figures_with_command_date_machine_packages_and_code(tmp_path):
    path = tmp_path / "deep" / "r.json"
    record.write_record(str(path), "training", {"x": 1}, "python benchmarks/train.py --steps 2")
    written = record.read_record(str(path))
    assert written["kind"] == "training" and written["figures"] == {"x": 1}
    assert written["command"] == "python benchmarks/train.py --steps 2"
    assert written["date"][:2] == "20" and "T" in written["date"]
    assert written["machine"]["cores"] == os.cpu_count() and written["machine"]["cpu"]
    assert "gpu" in written["machine"] and written["machine"]["python"].count(".") == 2
    assert written["packages"]["tensorflow"] and set(record.PACKAGES) <= set(written["packages"])
    assert written["code"]  # git describe of this checkout


def test_a_record_names_the_command_as_run_from_the_repository_root():
    script = os.path.join(REPO, "benchmarks", "train.py")
    assert record.command_line([script, "--only", "MARN (width 32"]) == "python benchmarks/train.py --only 'MARN (width 32'"


def test_a_file_that_is_not_a_record_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"runs": {}}))
    with pytest.raises(ValueError, match="not a benchmark record"):
        record.read_record(str(path))


def test_a_timing_is_the_median_of_its_runs_with_their_range():
    assert record.median_range([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "low": 1.0, "high": 10.0,
                                                          "runs": [3.0, 1.0, 2.0, 10.0]}
    assert record.median_range([])["median"] is None


def test_training_ratios_pair_the_runs_of_one_repeat_and_skip_failed_ones():
    marn = [{"examples_per_second": 100.0, "peak_memory_mb": 9.0}, {"error": ["x"]},
            {"examples_per_second": 300.0, "peak_memory_mb": 9.0}]
    din = [{"examples_per_second": 50.0}, {"examples_per_second": 60.0}, {"examples_per_second": 100.0}]
    assert train.ratio(marn, din)["runs"] == [2.0, 3.0]
    summary = train.summarize(marn)
    assert summary["examples_per_second"]["median"] == 200.0 and summary["errors"] == [["x"]]


def test_serving_figures_are_medians_of_the_alternating_runs_with_their_range(capsys):
    def run(p99: float) -> dict:
        return {"load_s": 1.0, "ranking": {"p50_ms": 3.0, "p99_ms": p99}, "batch": {"p50_ms": 10.0, "p99_ms": 20.0}}

    runs = {"MARN": [run(6.0), run(4.0), run(5.0)], "deepctr DIN (peer)": [run(4.0), run(4.0), run(8.0)]}
    figures = serving.summarize(runs, "export/marn/1", "CPU: test", calls=300, warmup=20)
    assert figures["repeats"] == 3
    assert figures["median"]["MARN"]["ranking"]["p99_ms"] == {"median": 5.0, "low": 4.0, "high": 6.0,
                                                              "runs": [6.0, 4.0, 5.0]}
    serving.print_table(figures)
    assert "| MARN | 3.00 [3.00, 3.00] / 5.00 [4.00, 6.00] |" in capsys.readouterr().out


# -- rendering ---------------------------------------------------------------------------------------------
def test_a_quality_block_renders_each_world_beside_its_floor_and_ends_with_its_record(tmp_path):
    path = write(tmp_path, "quality-a.json", "quality", quality("default", {"man": [0.75, 0.77], "marn": [0.78]}),
                 "2026-12-06T10:00:00+00:00", "python benchmarks/quality.py --seeds 2")
    page(tmp_path, "quality")
    assert render.run(str(tmp_path), check=False) == []
    body = block((tmp_path / "README.md").read_text(), "quality")
    assert "| no-model floor (item + user click rates) | 0.7000 (a) |" in body
    assert "| man | 0.7600 ± 0.0141 (2 seeds, a) |" in body  # the sample std (ddof 1)
    assert "| marn | 0.7800 ± 0.0000 (1 seeds, a) |" in body
    last = body.strip().splitlines()[-1]
    assert path in last and "python benchmarks/quality.py --seeds 2" in last and "2026-12-06 10:00 UTC" in last
    assert f"{os.cpu_count()} cores" in last
    assert render.run(str(tmp_path), check=True) == []


def test_each_row_comes_from_the_newest_record_that_ran_it_on_its_world(tmp_path):
    write(tmp_path, "old.json", "quality", quality("default", {"din": [0.70], "man": [0.71]}), "2026-12-01")
    write(tmp_path, "new.json", "quality", quality("default", {"man": [0.75]}, floor=0.60), "2026-12-02")
    write(tmp_path, "other.json", "quality", quality("realistic", {"man": [0.65]}), "2026-12-03")
    page(tmp_path, "quality-detail")
    render.run(str(tmp_path), check=False)
    body = block((tmp_path / "README.md").read_text(), "quality-detail")
    default, realistic = body.split("**realistic world**")
    assert "| man | 1 | 0.7400 ± 0.0000 | 0.7500 ± 0.0000 |" in default and "(b)" in default  # new.json
    assert "| din | 1 |" in default and "0.7000 ± 0.0000" in default  # only old.json ran din
    assert "| no-model floor | – | – | 0.6000 |" in default
    assert "| man | 1 | 0.6400 ± 0.0000 | 0.6500 ± 0.0000 |" in realistic


def test_the_targets_block_reads_the_newest_record_of_the_whole_ladder_on_both_worlds(tmp_path):
    """A later record of one world or some rungs (a trial) does not replace the targets of the full run."""
    ladder = {m: [0.75] for m in render.LADDER}
    full = {"worlds": {w: quality(w, ladder)["worlds"][w] for w in render.WORLDS}, "targets": [
        {"name": "default: test AUC marn - din, mean over paired seeds", "measured": 0.004, "target": ">= +0.003",
         "met": True},
        {"name": "default: marn D1 accuracy, median over seeds", "measured": 0.41, "target": "0.29 ± 0.07",
         "met": False}]}
    path = write(tmp_path, "full.json", "quality", full, "2026-12-01")
    trial = quality("default", {"marn": [0.80]})
    trial["targets"] = [{"name": "default: marn test AUC - no-model floor", "measured": 0.1, "target": ">= +0.02",
                         "met": True}]
    write(tmp_path, "trial.json", "quality", trial, "2026-12-02")
    page(tmp_path, "quality-targets")
    assert render.run(str(tmp_path), check=False) == []
    body = block((tmp_path / "README.md").read_text(), "quality-targets")
    assert "| default: test AUC marn - din, mean over paired seeds | +0.0040 | >= +0.003 | yes |" in body
    assert "| default: marn D1 accuracy, median over seeds | 0.410 | 0.29 ± 0.07 | NO |" in body
    assert "no-model floor" not in body  # the trial's target
    assert "1 of 2 targets met" in body and path in body


def test_the_check_fails_on_a_block_edited_by_hand(tmp_path):
    write(tmp_path, "q.json", "quality", quality("default", {"man": [0.75]}), "2026-12-06")
    page(tmp_path, "quality", file="benchmarks/README.md")
    render.run(str(tmp_path), check=False)
    readme = tmp_path / "benchmarks" / "README.md"
    readme.write_text(readme.read_text().replace("0.7500", "0.7600"))
    problems = render.run(str(tmp_path), check=True)
    assert len(problems) == 1 and "benchmarks/README.md" in problems[0] and "`quality`" in problems[0]
    assert "0.7600" in readme.read_text()  # the check changes nothing


def test_a_missing_speed_record_fails_naming_the_command_that_makes_it(tmp_path):
    text = page(tmp_path, "speed")
    problems = render.run(str(tmp_path), check=True)
    assert len(problems) == 1 and "no speed record" in problems[0] and render.SPEED_COMMAND in problems[0]
    assert render.run(str(tmp_path), check=False) == problems
    assert (tmp_path / "README.md").read_text() == text  # left as it was, nothing invented


def test_speed_blocks_render_medians_with_their_range_from_the_newest_full_size_record(tmp_path):
    path = write(tmp_path, "speed-1.json", "speed", speed(), "2026-12-07T10:00:00+00:00",
                 "python benchmarks/run_all.py --json x.json")
    write(tmp_path, "speed-2.json", "speed", speed(quick=True), "2026-12-08", "python benchmarks/run_all.py --quick")
    page(tmp_path, "speed", "speed-targets", "training", "pipeline", "serving")
    assert render.run(str(tmp_path), check=False) == []
    text = (tmp_path / "README.md").read_text()
    glance = block(text, "speed")
    assert "| training: MARN examples/s (width 32, batch 1024) | 9,000 [8,000, 10,000] |" in glance
    assert "| serving: MARN p99, 1 user x 100 candidates | 5.00 [4.00, 6.00] ms |" in glance
    assert "| pipeline: events/s end to end (1,000 events, 2 workers) | 25,000 [20,000, 30,000] |" in glance
    assert path in glance.splitlines()[-1] and "--quick" not in text
    targets = block(text, "speed-targets")
    assert "| MARN / DIN peer, ranking p99 | 1.25x [1.00x, 1.50x] | <= 1.0x | NO |" in targets
    assert "`python benchmarks/training.py`" in block(text, "training").splitlines()[-1]
    assert "| MARN | 3.00 [3.00, 3.00] / 5.00 [4.00, 6.00] |" in block(text, "serving")
    assert render.run(str(tmp_path), check=True) == []


def test_an_unknown_block_or_an_unpaired_marker_is_reported(tmp_path):
    write(tmp_path, "q.json", "quality", quality("default", {"man": [0.75]}), "2026-12-06")
    (tmp_path / "README.md").write_text("<!-- rendered: nothing -->\n<!-- end rendered: nothing -->\n"
                                        "<!-- rendered: quality -->\n")
    problems = render.run(str(tmp_path), check=True)
    assert any("`nothing`: no such table" in p for p in problems)
    assert any("without their pair" in p for p in problems)
