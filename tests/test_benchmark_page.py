"""The performance page and README table are rendered from saved benchmark records, and only from them."""
import json

import pytest

from scd.benchmarks import page, record


def _save(tmp_path, name, figures):
    record.save(tmp_path, name, f"scd.benchmarks.{name}", ["--repeats", "3"], figures)


def test_figure_targets():
    assert record.figure(2.5, "x", "speedup", ">= 2")["met"] is True
    assert record.figure(1.5, "x", "speedup", ">= 2")["met"] is False
    assert record.figure(21.0, "min", "wall", "<= 20")["met"] is False
    assert "target" not in record.figure(3.0, "MB", "disk")


def test_page_and_readme_block(tmp_path):
    recs = tmp_path / "records"
    _save(recs, "vs_trl", {"speedup": record.figure(2.31, "x", "TD step vs TRL GKDTrainer", ">= 2"),
                           "rss": record.figure(410.0, "MB", "peak RSS")})
    _save(recs, "startup", {"job": record.figure(3.2, "s", "fixed cost of a job", "<= 2")})
    data = json.loads((recs / "vs_trl.json").read_text())
    assert data["command"] == "python -m scd.benchmarks.vs_trl --repeats 3"
    assert {"code commit", "date (UTC)", "machine"} <= data["stamp"].keys()

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- performance:start -->\nold table\n<!-- performance:end -->\nrest\n")
    out = tmp_path / "docs" / "performance.md"
    out.parent.mkdir()
    page.main(["--records", str(recs), "--out", str(out), "--readme", str(readme)])
    text = out.read_text()
    assert "## vs_trl" in text and "2.31 x" in text and ">= 2 (met)" in text and "<= 2 (not met)" in text
    new = readme.read_text()
    assert "old table" not in new and new.startswith("intro\n") and new.endswith("rest\n")
    assert "`python -m scd.benchmarks.startup --repeats 3`" in new and "[performance](docs/performance.md)" in new
    assert "peak RSS" not in new  # only figures with a target are headlines


def test_bad_records_and_missing_markers(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="x.json: not a benchmark record"):
        record.load(tmp_path)
    (tmp_path / "x.json").write_text('{"figures": {}}')
    with pytest.raises(ValueError, match="rerun its benchmark with --save"):
        record.load(tmp_path)
    with pytest.raises(ValueError, match="no '<!-- performance:start -->'"):
        page.replace_block("no markers here", ["x"], "README.md")


def test_commands_name_no_machine_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    line = record.command_line("scd.benchmarks.startup", ["--reference", "/somewhere/else/ref", "--results",
                                                          str(tmp_path / "results"), "--repeats", "2"])
    assert line == f"python -m scd.benchmarks.startup --reference <dir> --results {tmp_path / 'results'} --repeats 2"
    assert record.portable_command("python -m x --work /scratch/vt --save docs/p") == \
        "python -m x --work <dir> --save docs/p"


def test_workflow_work_by_stage_sums_run_records_and_teacher_passes(tmp_path):
    from scd.benchmarks.workflow import work_by_stage

    def rec(name, stage, seed, start, end):
        path = tmp_path / "runs" / name / "record.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"tags": {"scd.stage": stage, "scd.seed": seed}, "start_time": start,
                                    "end_time": end}))

    rec("a", "distill", "0", 1_000, 31_000)
    rec("b", "distill", "1", 5_000, 15_000)
    rec("c", "teacher_sft", "0", 0, 120_000)
    rec("d", "distill", "1", 5_000, None)  # still running, or killed: no span
    manifest = tmp_path / "task" / "seed0" / "teacher_outputs" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"seconds": 7.5}))
    got = work_by_stage(tmp_path)
    assert got["seeds"] == 2
    assert got["stages"] == {"distill": {"runs": 2, "seconds": 40.0}, "teacher_sft": {"runs": 1, "seconds": 120.0},
                             "teacher_outputs": {"runs": 1, "seconds": 7.5}}
