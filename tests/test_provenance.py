"""Provenance: the data a task is prepared from is the declared data (or recorded as changed), each job's params
carry a fingerprint of the code it runs, MLflow records the commit and plugins, and a broken plugin is one line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from scd import checkout, fingerprint, mlflow_sync, tracking
from scd.cli import main
from scd.config import ConfigError, data_inputs, load_config, stage_config
from scd.distill import plugins
from scd.distill.parts import DIVERGENCES, RESPONSES, SCHEDULES, WEIGHTINGS
from scd.fingerprint import code_files
from scd.settings import STAGES, DistillJob, EvaluateJob, MethodSpec, to_json
from scd.stages.prepare import prepare
from tasks import get_task, list_tasks
from tasks.datafiles import ModifiedDataError, TaskDataError, check_pinned, declared_files, ensure_files

TASK = "pubmedqa"  # smoke-sized in the smoke profile, declares two data files


def _tamper(path) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2
    while not chr(data[i]).isalpha():
        i += 1
    data[i] = ord("X") if data[i] != ord("X") else ord("Y")
    path.write_bytes(bytes(data))


@pytest.fixture
def tampered(tmp_path, monkeypatch, shared_data):
    """A copy of the task's data with one byte of its first declared file changed: (data dir, that file)."""
    data = tmp_path / "data"
    subdir = declared_files(get_task(TASK))[0].subdir
    shutil.copytree(shared_data / subdir, data / subdir)
    target = declared_files(get_task(TASK))[0].path(data)
    _tamper(target)
    monkeypatch.setenv("SCD_DATA_DIR", str(data))
    return data, target


def _prepare_job(tmp_path, **overrides):
    cfg = load_config("smoke", {"results_dir": str(tmp_path / "results")} | overrides)
    return stage_config(cfg, TASK, "prepare")


# ---- 1. data integrity ------------------------------------------------------------------------------------------

def test_prepare_stops_on_a_modified_data_file(tmp_path, tampered, capsys):
    data, target = tampered
    job = _prepare_job(tmp_path)
    assert job.allow_modified_data is False
    expected = declared_files(get_task(TASK))[0].sha256
    with pytest.raises(ModifiedDataError) as e:
        prepare(job, tmp_path / "prepared")
    msg = str(e.value)
    found = check_pinned(get_task(TASK), data, allow_modified=True)[f"{target.parent.name}/{target.name}"]["found"]
    assert str(target) in msg and expected in msg and found in msg and found != expected
    assert f"scd data fetch {TASK}" in msg and "allow_modified_data: true" in msg
    assert not (tmp_path / "prepared").exists()
    # the command: one line, exit 2
    rc = main(["prepare", "--task", TASK, "--config", to_json(job), "--out", str(tmp_path / "prepared")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and err.startswith("scd prepare: error: ") and expected in err


def test_allow_modified_data_is_recorded_in_the_manifest_and_mlflow(tmp_path, tampered):
    data, target = tampered
    job = _prepare_job(tmp_path, allow_modified_data=True)
    assert job.allow_modified_data is True
    manifest = prepare(job, tmp_path / "prepared")
    assert manifest == json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    key = f"{target.parent.name}/{target.name}"
    expected = declared_files(get_task(TASK))[0].sha256
    assert list(manifest["data_modified"]) == [key]
    assert manifest["data_modified"][key]["expected"] == expected
    found = manifest["data_modified"][key]["found"]
    assert found != expected and manifest["data_sha256"][key] == found
    assert set(manifest["data_sha256"]) == {f"{f.subdir}/{f.name}" for f in declared_files(get_task(TASK))}
    mlflow_sync.sync(job.results_dir)  # the job's run record, logged as its MLflow run
    client = MlflowClient(tracking.tracking_uri(job))
    exp = client.get_experiment_by_name(job.mlflow.experiment)
    params = client.search_runs([exp.experiment_id])[0].data.params
    assert params["allow_modified_data"] == "True" and params["data_modified"] == "1"
    assert params[f"data.{key}.sha256"] == found
    assert params["code.fingerprint"] == job.code and params["code.commit"]


def test_pinned_data_has_nothing_modified(shared_data):
    for task in [t for t in list_tasks() if t.data][:3]:
        hashes = check_pinned(task, shared_data)
        assert hashes and all(h["found"] == h["expected"] for h in hashes.values())


def test_the_switch_is_a_param_of_the_prepare_job_only(tmp_path):
    off, on = _prepare_job(tmp_path), _prepare_job(tmp_path, allow_modified_data=True)
    assert to_json(off) != to_json(on)  # flipping it re-prepares
    cfg = load_config("smoke", {"allow_modified_data": True})
    assert stage_config(cfg, TASK, "sft", "teacher") == stage_config(load_config("smoke"), TASK, "sft", "teacher")
    with pytest.raises(ConfigError, match="allow_modified_data"):
        load_config("smoke", {"allow_modified_data": "yes"})


def test_data_inputs_are_the_declared_files_in_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("SCD_DATA_DIR", str(tmp_path / "nowhere"))  # absent files are still named
    cfg = load_config("smoke")
    for name in cfg["tasks"]:
        expected = [str(f.path(tmp_path / "nowhere")) for f in declared_files(get_task(name))]
        assert data_inputs(cfg, name) == expected
    assert data_inputs(cfg, TASK) and all(os.path.isabs(p) for p in data_inputs(cfg, TASK))
    generated = [t.name for t in list_tasks() if not t.data]
    assert generated and data_inputs(cfg, generated[0]) == []
    monkeypatch.delenv("SCD_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("smoke", {"data_dir": "rel"})
    assert data_inputs(cfg, TASK)[0] == str(tmp_path / "rel" / declared_files(get_task(TASK))[0].subdir
                                             / declared_files(get_task(TASK))[0].name)


def test_startup_check_honours_the_switch(tampered):
    data, target = tampered
    before = target.read_bytes()
    with pytest.raises(TaskDataError, match="allow_modified_data: true"):
        ensure_files(get_task(TASK), data, False)
    said = []
    assert ensure_files(get_task(TASK), data, False, say=said.append, allow_modified=True) == []
    assert len(said) == 1 and target.name in said[0]
    # in the fetchable cache too: the changed file is kept, nothing is downloaded (no server here)
    assert ensure_files(get_task(TASK), data, True, base_url="http://127.0.0.1:9", say=said.append,
                        allow_modified=True, timeout=1) == []
    assert target.read_bytes() == before


# ---- 2. code provenance -----------------------------------------------------------------------------------------

PLUGIN_SOURCE = '''
from scd.distill.parts import register_divergence


@register_divergence("prov_l2", reference="a test")
def prov_l2(student_logits, teacher_logits, mask, temperature, scale=1.0):
    return scale * ((student_logits - teacher_logits) ** 2).mean(-1) * mask
'''


@pytest.fixture
def outside_part(tmp_path, monkeypatch):
    """A divergence registered from a module outside the repository (as an installed plugin's): its file."""
    path = tmp_path / "prov_parts.py"
    path.write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    importlib.import_module("prov_parts")
    yield path
    DIVERGENCES._items.pop("prov_l2", None)
    sys.modules.pop("prov_parts", None)


def _cfg():
    return load_config("smoke", {"methods": {"mine": {"divergence": "prov_l2"}}, "run_methods": ["td", "mine"]})


def _jobs(cfg):
    return {(stage, name): stage_config(cfg, TASK, stage, name)
            for stage, name in [("prepare", None), ("sft", "teacher"), ("sft", "student"), ("teacher_outputs", None),
                                ("distill", "td"), ("distill", "mine"), ("evaluate", None), ("zero_shot", "teacher")]}


def test_every_job_carries_a_code_fingerprint(outside_part):
    jobs = _jobs(_cfg())
    assert {type(j) for j in jobs.values()} == set(STAGES.values())
    for job in jobs.values():
        assert len(job.code) == 16 and int(job.code, 16) >= 0
        assert json.loads(to_json(job))["code"] == job.code  # in the params the Snakefile passes


def test_editing_a_method_part_reruns_only_its_jobs(outside_part):
    before = _jobs(_cfg())
    outside_part.write_text(PLUGIN_SOURCE + "# an edit\n")
    st = os.stat(outside_part)
    os.utime(outside_part, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = _jobs(_cfg())
    changed = {k for k in before if before[k].code != after[k].code}
    assert changed == {("distill", "mine")}


def test_editing_core_code_reruns_the_stages_that_run_it(monkeypatch):
    cfg = load_config("smoke")
    before = _jobs_core(cfg)
    real = fingerprint._file_hash

    def edited(path):
        return "edited" if str(path).endswith(os.path.join("scd", "train.py")) else real(path)

    monkeypatch.setattr(fingerprint, "_file_hash", edited)
    after = _jobs_core(cfg)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {("sft", "teacher"), ("distill", "td")}


def _jobs_core(cfg):
    return {(s, n): stage_config(cfg, TASK, s, n).code
            for s, n in [("prepare", None), ("sft", "teacher"), ("teacher_outputs", None), ("distill", "td"),
                         ("evaluate", None)]}


def test_code_files_follow_the_stage_and_the_method_parts():
    assert {"scd/train.py", "scd/models.py", "scd/stages/sft.py"} <= set(code_files("sft"))
    assert {"scd/evaluate.py", "scd/stages/evaluate.py", "tasks/metrics.py"} <= set(code_files("evaluate"))
    assert "scd/train.py" not in code_files("evaluate")
    for stage in STAGES:
        assert not {"scd/tracking.py", "scd/layout.py", "scd/settings.py"} & set(code_files(stage, None))
    # every registered part's module counts for a method that uses it, and for no method that does not
    cfg = load_config("smoke")
    base = dict(stage_config(cfg, TASK, "distill", "td").spec.__dict__)
    for key, registry in (("divergence", DIVERGENCES), ("schedule", SCHEDULES), ("weighting", WEIGHTINGS),
                          ("responses", RESPONSES)):
        for name, obj in registry.items():
            module = obj.__module__
            if not module.startswith(("scd.", "baselines.")):
                continue
            spec = MethodSpec(**(base | {key: name}))
            assert module.replace(".", "/") + ".py" in code_files("distill", spec), (key, name)
    taid = MethodSpec(**(base | {"divergence": "taid"}))
    assert "baselines/taid.py" in code_files("distill", taid)
    assert "baselines/taid.py" not in code_files("distill", MethodSpec(**base))


def test_plugin_version_is_in_the_fingerprint_and_the_job(outside_part, monkeypatch):
    plugin = plugins.Plugin("my_lab", "prov_parts", "my-lab", "0.1", "prov_parts")
    monkeypatch.setattr(plugins, "_plugins", plugins.plugins() + [plugin])
    first = stage_config(_cfg(), TASK, "distill", "mine")
    assert first.plugins == {"my_lab": "0.1"} and stage_config(_cfg(), TASK, "distill", "td").plugins == {}
    monkeypatch.setattr(plugins, "_plugins", plugins.plugins()[:-1] + [plugins.Plugin(
        "my_lab", "prov_parts", "my-lab", "0.2", "prov_parts")])
    second = stage_config(_cfg(), TASK, "distill", "mine")
    assert second.plugins == {"my_lab": "0.2"} and second.code != first.code


def test_git_state_of_a_repository_and_of_none(tmp_path, monkeypatch):
    checkout.git_state.cache_clear()
    assert checkout.git_state(tmp_path) == ("unknown", "unknown")  # not a repository
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    if shutil.which("git") is None:
        pytest.fail("git is needed for this test")
    subprocess.run(git + ["init", "-q"], check=True)
    (repo / "a.txt").write_text("a")
    subprocess.run(git + ["add", "a.txt"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "a"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert checkout.git_state(repo) == (head, "false")
    (repo / "a.txt").write_text("b")
    checkout.git_state.cache_clear()
    assert checkout.git_state(repo) == (head, "true")
    checkout.git_state.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no git at all
    assert checkout.git_state(repo) == ("unknown", "unknown")
    checkout.git_state.cache_clear()


def test_job_run_records_code_and_plugins(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    job = DistillJob(task=TASK, results_dir=str(tmp_path), method="mine", code="0123456789abcdef",
                     plugins={"my_lab": "0.1"})
    with tracking.job_run(job, "x", {}, {}) as log:
        pass
    run_id = mlflow_sync.sync(tmp_path)[log.run_id]
    params = MlflowClient(tracking.tracking_uri(job)).get_run(run_id).data.params
    commit, dirty = checkout.git_state()
    assert params["code.commit"] == commit and params["code.dirty"] == dirty
    assert params["code.fingerprint"] == "0123456789abcdef" and params["plugin.my_lab.version"] == "0.1"
    job = EvaluateJob(task=TASK, results_dir=str(tmp_path))
    with tracking.job_run(job, "y", {}, {}) as log:
        pass
    run_id = mlflow_sync.sync(tmp_path)[log.run_id]
    params = MlflowClient(tracking.tracking_uri(job)).get_run(run_id).data.params
    assert "code.commit" in params and not any(k.startswith("plugin.") for k in params)


# ---- 12. broken plugins -----------------------------------------------------------------------------------------

class BrokenEntryPoint:
    name, group, value, dist = "my_lab", "scd_bench.baselines", "my_lab.baselinez", None

    def load(self):
        raise ModuleNotFoundError("No module named 'my_lab.baselinez'")


@pytest.fixture
def broken(monkeypatch):
    import importlib.metadata
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [BrokenEntryPoint()] if group == "scd_bench.baselines" else [])
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(plugins, "_plugins", [])


def test_a_broken_entry_point_is_one_line_and_the_rest_loads(broken, capsys):
    plugins.load_plugins()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "my_lab = my_lab.baselinez" in err and "ModuleNotFoundError" in err
    assert [p.name for p in plugins.broken_plugins()] == ["my_lab"]
    assert any(p.name.startswith("baselines.") and p.error is None for p in plugins.plugins())
    assert "fkl" in DIVERGENCES and "taid" in DIVERGENCES


def test_commands_that_do_not_need_the_plugin_work(broken, capsys):
    assert main(["methods", "list", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "my_lab" in line]
    assert len(lines) == 1 and lines[0].startswith("broken: plugin entry point my_lab = my_lab.baselinez")
    assert "td " in out and "taid" in out
    assert main(["tasks", "list"]) == 0
    cfg = load_config("smoke")  # a run whose methods come from elsewhere
    assert stage_config(cfg, TASK, "distill", "td").spec.divergence == "fkl"


def test_a_run_that_needs_the_plugin_names_it(broken):
    with pytest.raises(ConfigError, match=r"unknown divergence 'lab_div'.*my_lab = my_lab\.baselinez"):
        load_config("smoke", {"methods": {"mine": {"divergence": "lab_div"}}, "run_methods": ["mine"]})


def test_a_broken_bundled_module_is_named(monkeypatch, capsys):
    import importlib.metadata
    import pkgutil
    real = pkgutil.iter_modules
    monkeypatch.setattr(plugins.pkgutil, "iter_modules",
                        lambda path: list(real(path)) + [pkgutil.ModuleInfo(None, "no_such_baseline", False)])
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(plugins, "_plugins", [])
    plugins.load_plugins()
    err = capsys.readouterr().err.strip()
    assert err == ("warning: plugin module baselines.no_such_baseline failed to load: ModuleNotFoundError: No module "
                   "named 'baselines.no_such_baseline'; its methods are unavailable")
