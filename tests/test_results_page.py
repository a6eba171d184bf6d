"""The results page generator (report/results_page.py): a stamp, and only the numbers that are in the files."""
from __future__ import annotations

import json
import platform
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from report.results_page import main, write_results_page

REPO = Path(__file__).resolve().parent.parent


def _cell(mean, std, seeds):
    return {"mean": mean, "std": std, "n": len(seeds), "values": [mean] * len(seeds), "seeds": seeds}


def _leaderboard() -> dict:
    return {
        "profile": "default", "results_dir": "results",
        "tasks": ["pubmedqa", "synthetic_subdomains"],
        "rows": ["teacher_sft", "scd+aw"],
        "metric": {"pubmedqa": "accuracy", "synthetic_subdomains": "exact_match"},
        "cells": {
            "teacher_sft": {"pubmedqa": _cell(0.5311, 0.0244, [0, 1, 2]),
                            "synthetic_subdomains": _cell(0.7953, 0.0312, [0, 1, 2]),
                            "average": _cell(0.6632, 0.0271, [0, 1, 2])},
            "scd+aw": {"pubmedqa": _cell(0.5521, 0.0, [0, 1, 2]),
                       "synthetic_subdomains": _cell(0.5064, 0.0431, [0, 1])},
        },
        "best": {"pubmedqa": ["scd+aw"], "synthetic_subdomains": ["teacher_sft"], "average": ["teacher_sft"]},
        "subdomains": {"synthetic_subdomains": {"teacher_sft": {"TFS": _cell(0.9891, 0.0061, [0, 1, 2]),
                                                                "SFS": _cell(0.6012, 0.0623, [0, 1, 2])}}},
    }


def _results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    results.mkdir()
    (results / "leaderboard.json").write_text(json.dumps(_leaderboard()))
    return results


def test_page_has_the_stamp_and_the_leaderboard_numbers(tmp_path):
    results = _results(tmp_path)
    out = tmp_path / "docs" / "results" / "default.md"
    write_results_page(results, out, "snakemake --cores 2")
    page = out.read_text()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert commit and commit in page
    for field in ("code commit", "date (UTC)", "machine", "CPU count", "python", "torch", "command"):
        assert f"| {field} |" in page
    assert platform.platform() in page and platform.python_version() in page
    assert "snakemake --cores 2" in page and "profile `default`" in page
    # mean ± std (n seeds), no mean marked as the best (no interval says it is), a missing cell as a dash
    assert "| `teacher_sft` | 0.531 ± 0.024 (n=3) | 0.795 ± 0.031 (n=3) | 0.663 ± 0.027 (n=3) |" in page
    assert "| `scd+aw` | 0.552 ± 0.000 (n=3) | 0.506 ± 0.043 (n=2) | – |" in page and "**" not in page
    assert "pubmedqa (accuracy)" in page and "synthetic_subdomains (exact_match)" in page
    assert "0.601 ± 0.062 (n=3)" in page and "0.989 ± 0.006 (n=3)" in page  # per subdomain (SFS, TFS)
    assert "Seeds: 0, 1, 2." in page
    # nothing measured that is not in the files: no job times, no wall time
    assert "wall time is not on this page" in page and "sum s" not in page


def test_times_come_from_the_job_records_and_the_mlflow_store(tmp_path):
    results = _results(tmp_path)
    seed = results / "synthetic_subdomains" / "seed0"
    for role, seconds in (("teacher", 12.5), ("student", 7.5)):
        (seed / role).mkdir(parents=True)
        (seed / role / "summary.json").write_text(json.dumps({"train_seconds": seconds}))
    (seed / "teacher_outputs").mkdir()
    (seed / "teacher_outputs" / "manifest.json").write_text(
        json.dumps({"checkpoints": {"ckpt-1": {"seconds": 3.0}, "best": {"seconds": 4.5}}}))
    for method, seconds in (("td", 20.0), ("scd+aw", 31.0)):
        (seed / "distill" / method).mkdir(parents=True)
        (seed / "distill" / method / "summary.json").write_text(json.dumps({"wall_seconds": seconds}))
    # The two tables of MLflow's schema the page reads, with one finished workflow invocation of 46 min 50 s
    with sqlite3.connect(results / "mlflow.db") as con:
        con.execute("CREATE TABLE runs (run_uuid TEXT, name TEXT, start_time INTEGER, end_time INTEGER, status TEXT)")
        con.execute("CREATE TABLE tags (key TEXT, value TEXT, run_uuid TEXT)")
        con.execute("CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT)")
        con.execute("INSERT INTO runs VALUES ('a', 'workflow-default', 1767225600000, 1767228410000, 'FINISHED')")
        con.execute("INSERT INTO runs VALUES ('b', 'td/seed0', 1767225700000, 1767225730000, 'FINISHED')")
        con.execute("INSERT INTO tags VALUES ('scd.kind', 'workflow', 'a')")
        con.execute("INSERT INTO params VALUES ('env.device', 'cpu', 'b')")
        con.execute("INSERT INTO params VALUES ('env.version.torch', '2.13.0+cpu', 'b')")
    out = tmp_path / "page.md"
    write_results_page(results, out, "snakemake --cores 2")
    page = out.read_text()
    assert "| workflow-default | 2026-01-01 00:00:00 | 46 min 50 s | FINISHED |" in page
    assert "td/seed0" not in page  # job runs are not invocations
    assert "| teacher SFT | 1 | 12.5 | 12.5 | 12.5 |" in page
    assert "| student SFT | 1 | 7.5 | 7.5 | 7.5 |" in page
    assert "| teacher outputs | 1 | 7.5 | 7.5 | 7.5 |" in page
    assert "| distillation | 2 | 51.0 | 20.0 | 31.0 |" in page
    assert "| device | cpu |" in page and "| torch | 2.13.0+cpu |" in page


def test_a_missing_leaderboard_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "page.md")])
    message = str(e.value.code)
    assert "leaderboard.json not found" in message and "\n" not in message
    assert not (tmp_path / "page.md").exists()


def test_a_malformed_leaderboard_is_one_clear_line(tmp_path):
    (tmp_path / "leaderboard.json").write_text("{not json")
    with pytest.raises(SystemExit, match="not valid JSON"):
        main(["--results", str(tmp_path), "--out", str(tmp_path / "page.md")])
    (tmp_path / "leaderboard.json").write_text(json.dumps({"tasks": []}))
    with pytest.raises(SystemExit, match="missing the key"):
        main(["--results", str(tmp_path), "--out", str(tmp_path / "page.md")])


def test_command_line_writes_the_page_without_a_traceback(tmp_path):
    results = _results(tmp_path)
    out = tmp_path / "default.md"
    done = subprocess.run([sys.executable, "-m", "report.results_page", "--results", str(results), "--out", str(out),
                           "--command", "snakemake --cores 2"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.exists() and "0.531 ± 0.024 (n=3)" in out.read_text()
    missing = subprocess.run([sys.executable, "-m", "report.results_page", "--results", str(tmp_path / "none"),
                              "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().startswith("results page:") and len(missing.stderr.strip().splitlines()) == 1


def test_modified_data_is_said_on_the_page(tmp_path):
    results = _results(tmp_path)
    board = _leaderboard() | {"data_modified": {"pubmedqa": {"pubmedqa/ori_pqal.json": {"expected": "e" * 64,
                                                                                          "found": "f" * 64}}}}
    (results / "leaderboard.json").write_text(json.dumps(board))
    write_results_page(results, tmp_path / "page.md", "snakemake --cores 2")
    page = (tmp_path / "page.md").read_text()
    assert "> Modified data: task `pubmedqa`" in page and "f" * 64 in page and "e" * 64 in page
    (tmp_path / "pinned").mkdir()
    write_results_page(_results(tmp_path / "pinned"), tmp_path / "pinned.md", "snakemake --cores 2")
    assert "Modified data" not in (tmp_path / "pinned.md").read_text()


def test_compute_figures_come_from_the_leaderboard(tmp_path):
    results = _results(tmp_path)
    page = write_and_read(results, tmp_path)
    assert "## Compute" not in page  # a leaderboard without them: no section, no invented figures
    lb = _leaderboard() | {"compute": {"total": {"scd+aw": {"train_seconds": 123.44, "teacher_seconds": 0.0,
                                                             "peak_rss_bytes": 612.3e6, "disk_bytes": 5.54e6}},
                                       "teacher_outputs_total": {"seconds": 40.0, "peak_rss_bytes": 700e6,
                                                                 "disk_bytes": 61e6}}}
    (results / "leaderboard.json").write_text(json.dumps(lb))
    page = write_and_read(results, tmp_path)
    assert "| `scd+aw` | 123.4 | 0.0 | 612.3 | 5.5 |" in page
    assert "`teacher_sft`" not in page.split("## Compute")[1].split("Shared")[0]  # no figures: no row
    assert "40.0 s, peak RSS 700.0 MB, 61.0 MB of cache" in page


def write_and_read(results: Path, tmp_path: Path) -> str:
    out = tmp_path / "page.md"
    write_results_page(results, out, "snakemake --cores 2")
    return out.read_text()


def test_comparisons_carry_intervals_and_bold_only_what_is_significant(tmp_path):
    results = _results(tmp_path)
    page = write_and_read(results, tmp_path)
    assert "No comparisons in this leaderboard" in page  # none computed: said, nothing invented
    win = {"diff": 0.031, "ci95": [0.012, 0.05], "p": 0.001, "se": 0.01, "p_holm": 0.004}
    tie = {"diff": 0.012, "ci95": [-0.004, 0.027], "p": 0.12, "se": 0.008, "p_holm": 0.31}
    near = {"diff": 0.02, "ci95": [0.001, 0.04], "p": 0.04, "se": 0.01, "p_holm": 0.08}  # CI excludes 0, Holm not
    lb = _leaderboard() | {
        "rows": ["teacher_sft", "student_sft", "td", "scd+aw", "cd"],
        "comparisons": {"pubmedqa": {"scd+aw": {"vs_td": tie, "vs_student_sft": win}, "cd": {"vs_td": near}}},
        "gap_closed": {"pubmedqa": {"scd+aw": {"value": 0.92, "ci95": [0.41, 1.3], "meaningful": True},
                                    "cd": {"value": 0.5, "ci95": [-2.0, 3.0], "meaningful": False}}},
        "mde": {"pubmedqa": {"value": 0.0224, "se": 0.008, "reference": "td", "rows": 2}},
        "statistics": {"resamples": 2000, "seeds": {"pubmedqa": [0, 1, 2]},
                       "omitted": {"synthetic_subdomains": ["no per-sample records for x"]}},
        "ranks": {"scd+aw": 1.5, "cd": 1.5}, "friedman": {"statistic": None, "p": None, "reason": "too few"},
        "oracle": {"pubmedqa": {"rows": ["cd", "cd.ckpt1"], "best_row": "cd", "best_mean": 0.55,
                                "regret": {"scd+aw": _cell(0.01, 0.02, [0, 1, 2])}}}}
    (results / "leaderboard.json").write_text(json.dumps(lb))
    page = write_and_read(results, tmp_path).split("## Comparisons")[1]
    assert "| `scd+aw` | +0.012 [-0.004, +0.027], p 0.310 | **+0.031 [+0.012, +0.050], p 0.004** | " \
           "0.92 [0.41, 1.30] |" in page
    assert "| `cd` | +0.020 [+0.001, +0.040], p 0.080 | – | (teacher not clearly ahead) |" in page
    assert page.count("**") == 2 + page.count("**Bold**") * 2  # the one significant cell (and the legend's word)
    assert "Detectable here: 0.022" in page and "Bootstrap resamples: 2000" in page
    assert "Not computed for synthetic_subdomains: no per-sample records for x." in page
    assert "### Oracle schedules" in page and "| pubmedqa | `cd`, `cd.ckpt1` | `cd` | 0.550 |" in page


def test_readme_summary_goes_between_its_markers_with_the_page_link(tmp_path):
    results = _results(tmp_path)
    win = {"diff": 0.031, "ci95": [0.012, 0.05], "p": 0.001, "p_holm": 0.004}
    tie = {"diff": 0.012, "ci95": [-0.004, 0.027], "p": 0.12, "p_holm": 0.31}
    lb = _leaderboard() | {
        "rows": ["teacher_sft", "td", "cd", "scd+aw", "cd.ckpt1"],
        "comparisons": {"average": {"scd+aw": {"vs_td": tie, "vs_student_sft": win}, "td": {"vs_student_sft": win},
                                    "cd": {"vs_td": tie}, "cd.ckpt1": {"vs_td": tie}}},
        "gap_closed": {"average": {"scd+aw": {"value": 0.92, "ci95": [0.41, 1.3], "meaningful": True}}},
        "mde": {"average": {"value": 0.0224, "se": 0.008, "reference": "td", "rows": 2}},
        "oracle": {"pubmedqa": {"rows": ["td", "cd", "cd.ckpt1"], "best_row": "cd.ckpt1", "best_mean": 0.55,
                                "regret": {"scd": _cell(0.01, 0.02, [0, 1, 2])}}}}
    (results / "leaderboard.json").write_text(json.dumps(lb))
    with sqlite3.connect(results / "mlflow.db") as con:  # what a job logged: the commit it ran
        con.execute("CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT)")
        con.execute("INSERT INTO params VALUES ('code.commit', 'abcdef0123456789', 'b')")
        con.execute("INSERT INTO params VALUES ('code.dirty', 'false', 'b')")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:default:start -->\nold\n<!-- results:default:end -->\nrest\n")
    main(["--results", str(results), "--out", str(tmp_path / "docs" / "default.md"), "--command", "snakemake -c2",
          "--readme", str(readme)])
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results:default:start -->\n") and text.endswith("<!-- results:default:end -->"
                                                                                           "\nrest\n")
    assert "\nold\n" not in text and "cd.ckpt1 |" not in text  # an oracle variant stays on the page
    assert "| `td` | – | – | **+0.031" in text and "| `cd` | – | +0.012" in text  # the oracle's base rows do not
    assert "| `scd+aw` | – | +0.012 [-0.004, +0.027], p 0.310 | **+0.031 [+0.012, +0.050], p 0.004** | " \
           "0.92 [0.41, 1.30] |" in text
    assert "| `teacher_sft` | 0.663 ± 0.027 (n=3) | – | – | – |" in text
    assert "Detectable here: 0.022." in text and "SCD's regret 0.010 ± 0.020 (n=3)" in text
    assert "One seed" not in text  # three seeds here
    assert "The jobs ran commit abcdef0. Page written at commit " in text
    assert "`snakemake -c2`" in text and "[docs/default.md](docs/default.md)" in text
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no '<!-- results:default:start -->'"):
        main(["--results", str(results), "--out", str(tmp_path / "p.md"), "--readme", str(readme)])
    assert readme.read_text() == "no markers\n"


def test_schedules_group_the_seeds_that_took_the_same_path(tmp_path):
    results = _results(tmp_path)

    def run(seed, path, problem=None):
        return {"seed": seed, "schedule": path, "checkpoints": ["ckpt-1", "best"], "trajectory_problem": problem}
    lb = _leaderboard() | {"schedules": {"pubmedqa": {
        "scd+aw": {"runs": [run(0, ["ckpt-1", "best"]), run(1, ["ckpt-1", "ckpt-1"]), run(2, ["ckpt-1", "best"])]},
        "td": {"runs": [run(0, ["best", "best"], "ckpt-1 is the same weights as best")]}}}}
    (results / "leaderboard.json").write_text(json.dumps(lb))
    page = write_and_read(results, tmp_path).split("## Teacher schedules")[1]
    assert "| `scd+aw` | ckpt-1 → best (seeds 0, 2); ckpt-1 → ckpt-1 (seed 1) |" in page
    assert "| `td` | best → best (seed 0) |" in page  # a row not in the leaderboard's rows still shown, after them
    assert page.index("`scd+aw`") < page.index("`td`")
    assert "Trajectory flagged: ckpt-1 is the same weights as best" in page
    lb.pop("schedules")
    (results / "leaderboard.json").write_text(json.dumps(lb))
    assert "## Teacher schedules" not in write_and_read(results, tmp_path)
