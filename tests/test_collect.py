"""`scd collect`: a results directory run in parts (one workflow run per task), aggregated from the files the
workflow's aggregate rule reads, without running anything. The files it lists are the rule's inputs (read from a
dry run's command line); one part's files are exactly that part's; copied alone into a fresh directory they give the
workflow's leaderboard; a missing file is one line naming the part's command."""
import json
import shlex
import shutil

import pytest
from conftest import REPO, dry_run, snakemake

from scd import config as scd_config
from scd.cli import build_parser, main

PART_CONFIG = ["seeds=[0]"]  # the smoke profile, one seed: two tasks, each a part
PART_TASKS = ("pubmedqa", "nrner")  # tiny splits in the smoke profile; a classification and a generation task
TIMESTAMPED = ("stamp",)  # when and where the leaderboard was aggregated


def collect(work, monkeypatch, capsys, *args):
    """`scd collect` in `work`: (exit code, stdout, stderr)."""
    monkeypatch.chdir(work)
    capsys.readouterr()
    code = main(["collect", *args])
    out, err = capsys.readouterr()
    return code, out, err


def rule_command(out: str) -> dict:
    """The aggregate rule's `scd aggregate` command line in a dry run's output (`-p`), parsed as `scd` parses it."""
    line = next(x for x in out.splitlines() if "scd aggregate " in x)
    return vars(build_parser().parse_args(shlex.split(line[line.index("scd aggregate ") + 4:])))


def listed(args) -> list[str]:
    return [*args["evals"], *args["samples"], *args["distill_summaries"], *args["teacher_outputs_manifests"],
            *args["prepared_manifests"]]


def test_the_listed_files_and_plan_are_the_aggregate_rules_inputs_and_params(tmp_path, shared_data, monkeypatch,
                                                                             capsys):
    # the default profile: oracle rows (they join the methods, the plans and the expected models) and 2 tasks
    monkeypatch.setenv("SCD_DATA_DIR", str(shared_data))
    code, out = dry_run(tmp_path, "-p", profile="default", data=shared_data)
    assert code == 0, out[-3000:]
    rule = rule_command(out)
    code, listing, err = collect(tmp_path, monkeypatch, capsys, "--profile", "default", "--list")
    # nothing has run: the list needs every file, so it is refused with the parts' commands
    assert code == 2 and listing == "" and "snakemake --workflow-profile profiles/default" in err, err
    monkeypatch.chdir(tmp_path)
    cfg = scd_config.load_workflow_config("default")
    inputs = scd_config.aggregate_inputs(cfg)
    assert [str(f) for files in inputs.values() for f in files] == listed(rule)
    assert rule["methods"] == scd_config.leaderboard_methods(cfg) and any(".ckpt" in m for m in rule["methods"])
    assert json.loads(rule["expect"]) == json.loads(json.dumps(scd_config.expected_plan(cfg)))
    assert json.loads(rule["ablations"]) == json.loads(json.dumps(scd_config.aggregate_plans(cfg)))
    assert rule["results_dir"] == cfg["results_dir"] and rule["profile"] == cfg["profile"]


@pytest.mark.parametrize("profile", ["smollm2", "smoke"])
def test_each_parts_files_are_its_tasks_share_of_the_whole(profile, monkeypatch):
    # `--config tasks=[<task>]` per part: together exactly the whole run's files, none in two parts
    monkeypatch.setenv("SCD_DATA_DIR", "/nonexistent")  # planning reads no data
    assert scd_config.workflow_profile_dir(profile) is not None
    def files_of(cfg: dict) -> list:
        return [f for files in scd_config.aggregate_inputs(cfg).values() for f in files]

    whole = scd_config.load_workflow_config(profile)
    everything = files_of(whole)
    parts = {t: files_of(scd_config.load_workflow_config(profile, [f"tasks=[{t}]"])) for t in whole["tasks"]}
    assert len(whole["tasks"]) >= 2 or profile != "smoke"  # smoke: a real partition (smollm2's tasks may change)
    assert sorted(f for files in parts.values() for f in files) == sorted(everything)
    for task, files in parts.items():
        assert files and all(f.relative_to(whole["results_dir"]).parts[0] == task for f in files)


def test_a_task_run_seed_by_seed_names_its_next_part(tmp_path, monkeypatch, capsys):
    # smollm2's parts: one task, over the seeds up to one more each time (one checkout: the shared teacher and its
    # outputs carry over); each part's files contain the previous part's, and the last is the task's whole share
    monkeypatch.setenv("SCD_DATA_DIR", "/nonexistent")  # planning reads no data
    monkeypatch.chdir(tmp_path)
    whole = scd_config.load_workflow_config("smollm2")
    task, seeds = whole["tasks"][0], whole["seeds"]
    assert len(seeds) >= 3

    def files_of(*over: str) -> list:
        cfg = scd_config.load_workflow_config("smollm2", [f"tasks=[{task}]", *over])
        return [f for files in scd_config.aggregate_inputs(cfg).values() for f in files]

    prefixes = [files_of(f"seeds=[{','.join(map(str, seeds[:k]))}]") for k in range(1, len(seeds) + 1)]
    for smaller, larger in zip(prefixes, prefixes[1:]):
        assert set(smaller) < set(larger)
    assert sorted(prefixes[-1]) == sorted(files_of())
    for f in prefixes[0]:  # the first seed's part has run
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("{}")
    code, out, err = collect(tmp_path, monkeypatch, capsys, "--profile", "smollm2", "--list", "--config",
                             f"tasks=[{task}]")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert (f"snakemake --workflow-profile profiles/smollm2 --config tasks='[{task}]' "
            f"seeds='[{seeds[0]},{seeds[1]}]', then one seed more at a time") in err
    for f in prefixes[0]:  # nothing has run: the whole task's part
        f.unlink()
    code, out, err = collect(tmp_path, monkeypatch, capsys, "--profile", "smollm2", "--list", "--config",
                             f"tasks=[{task}]")
    assert code == 2 and f"--config tasks='[{task}]')" in err and "seeds=" not in err, err


@pytest.fixture(scope="module")
def parts_run(tmp_path_factory, shared_data):
    """The smoke workflow over the two part tasks, once, in a temporary directory (its own leaderboard: the
    reference), and the dry run's aggregate command before it."""
    work = tmp_path_factory.mktemp("parts")
    config = ["--config", *PART_CONFIG, f"tasks=[{','.join(PART_TASKS)}]"]
    code, out = dry_run(work, "-p", *config, data=shared_data)
    assert code == 0, out[-3000:]
    rule = rule_command(out)
    # up to the leaderboard: the report is tests/test_report_page.py's
    code, out = snakemake(work, "aggregate", *config, data=shared_data, timeout=1800)
    assert code == 0, out[-8000:]
    return work, rule


def part_files(work, monkeypatch, capsys, task) -> list[str]:
    code, out, err = collect(work, monkeypatch, capsys, "--profile", "smoke", "--list", "--config", *PART_CONFIG,
                             f"tasks=[{task}]")
    assert code == 0 and err == "", err
    return out.splitlines()


def without_stamp(board: dict) -> dict:
    return {k: v for k, v in board.items() if k not in TIMESTAMPED}


@pytest.mark.integration
def test_parts_committed_alone_give_the_workflows_leaderboard(parts_run, tmp_path, monkeypatch, capsys):
    work, rule = parts_run
    whole = ["--config", *PART_CONFIG, f"tasks=[{','.join(PART_TASKS)}]"]
    code, out, err = collect(work, monkeypatch, capsys, "--profile", "smoke", "--list", *whole)
    assert code == 0 and err == "" and out.splitlines() == listed(rule)  # what the rule reads, in its order
    # each part's files (what `git add -f $(scd collect ... --list)` commits after that part), into a fresh clone
    fresh = tmp_path / "clone"
    for task in PART_TASKS:
        for f in part_files(work, monkeypatch, capsys, task):
            assert f.startswith(f"results/smoke/{task}/")
            (fresh / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(work / f, fresh / f)
    before = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    assert sorted(before) == sorted(listed(rule))
    rendered = []  # the report of the leaderboard written (its rendering is tests/test_report_page.py's)
    monkeypatch.setattr("report.render.render", lambda lb, **kw: rendered.append(lb) or "<html>the report</html>")
    code, out, err = collect(fresh, monkeypatch, capsys, "--profile", "smoke", *whole)
    assert code == 0, err
    board = json.loads((fresh / "results/smoke/leaderboard.json").read_text())
    reference = json.loads((work / "results/smoke/leaderboard.json").read_text())
    assert without_stamp(board) == without_stamp(reference)
    assert board["tasks"] == sorted(PART_TASKS) and "stamp" in board
    assert len(rendered) == 1 and rendered[0] == board
    assert (fresh / "results/smoke/report.html").read_text() == "<html>the report</html>"
    after = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file())
    assert after == sorted(before + ["results/smoke/leaderboard.json", "results/smoke/report.html"])  # nothing else
    for f in before:  # read, not rewritten
        assert (fresh / f).read_bytes() == (work / f).read_bytes()


@pytest.mark.integration
def test_a_missing_file_is_one_line_naming_its_parts_command(parts_run, tmp_path, monkeypatch, capsys):
    work, rule = parts_run
    fresh = tmp_path / "clone"
    for f in listed(rule):
        (fresh / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / f, fresh / f)
    board = fresh / "results/smoke/leaderboard.json"
    board.write_text("{}")  # a leaderboard from before: left as it is
    gone = "results/smoke/nrner/seed0/eval/td.samples.jsonl"
    (fresh / gone).unlink()
    whole = ["--config", *PART_CONFIG, f"tasks=[{','.join(PART_TASKS)}]"]
    for extra in ([], ["--list"]):
        code, out, err = collect(fresh, monkeypatch, capsys, "--profile", "smoke", *extra, *whole)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"scd collect: error: 1 of the {len(listed(rule))} files the leaderboard reads are "
                              f"missing ({gone})")
        assert "snakemake --workflow-profile profiles/smoke --config 'seeds=[0]' tasks='[nrner]'" in err
        assert "pubmedqa" not in err
    assert board.read_text() == "{}" and not (fresh / "results/smoke/report.html").exists()
    assert (REPO / "profiles" / "smoke" / "config.yaml").is_file()  # the command's workflow profile exists
