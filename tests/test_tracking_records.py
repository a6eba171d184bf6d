"""Run records (scd/tracking.py) and their sync into MLflow (scd/mlflow_sync.py): a synced run holds what the job
recorded, each record is logged once, failed and killed jobs keep their status, a corrupt record is one line."""
import json
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from scd import cli, mlflow_sync, tracking
from scd.layout import Layout
from scd.settings import Job, Tracking


@pytest.fixture
def job(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    return Job(task="pubmedqa", results_dir=str(tmp_path), mlflow=Tracking(experiment="x"))


def _runs(job):
    client = MlflowClient(tracking.tracking_uri(job))
    exp = client.get_experiment_by_name("x")
    return client.search_runs([exp.experiment_id]) if exp else []


def test_a_workflow_job_does_not_import_mlflow():
    code = ("import sys, scd.tracking, scd.stages.evaluate, scd.stages.distill, scd.stages.sft, scd.stages.prepare; "
            "print(sorted(m for m in sys.modules if m == 'mlflow' or m.startswith('mlflow.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_synced_run_holds_what_the_job_recorded(job, tmp_path, monkeypatch):
    parent_id = "0" * 32
    monkeypatch.setenv(tracking.PARENT_ENV, parent_id)
    src = tmp_path / "samples.jsonl"
    src.write_text('{"a": 1}\n')
    with tracking.job_run(job, "t/td/seed0", {"task": "t", "stage": "distill"}, {"config": job, "seed": 3}) as log:
        for step in range(5):
            log({"train/loss": 1.0 / (step + 1), "lr": 0.1}, step)
        log.artifact_json({"k": [1, 2]}, "schedule.json")
        log.artifact_text("<svg/>", "aw/hist.svg")
        log.artifact_file(src, "samples")
    src.write_text("changed after the job\n")  # the record kept its own copy
    record = json.loads(Layout(tmp_path).run_record(log.run_id).read_text())
    assert record["status"] == "FINISHED" and record["end_time"] >= record["start_time"]

    rid = mlflow_sync.sync(tmp_path)[log.run_id]
    client = MlflowClient(tracking.tracking_uri(job))
    run = client.get_run(rid)
    assert run.info.run_name == "t/td/seed0" and run.info.status == "FINISHED"
    assert (run.info.start_time, run.info.end_time) == (record["start_time"], record["end_time"])
    assert run.data.params == record["params"]
    assert run.data.params["seed"] == "3" and run.data.params["config.evaluation.batch_size"] == str(
        job.evaluation.batch_size) and "env.version.torch" in run.data.params
    assert run.data.tags["mlflow.parentRunId"] == parent_id and run.data.tags["scd.stage"] == "distill"
    assert {k: v for k, v in run.data.tags.items() if k in record["tags"]} == record["tags"]
    assert run.data.tags[mlflow_sync.RECORD_TAG] == log.run_id
    history = client.get_metric_history(rid, "train/loss")
    assert [(m.step, m.value, m.timestamp) for m in history] == [
        (step, v, ts) for k, v, ts, step in record["metrics"] if k == "train/loss"]
    assert {a.path for a in client.list_artifacts(rid)} == {"job.json", "schedule.json", "aw", "samples"}
    assert json.loads(open(client.download_artifacts(rid, "schedule.json", str(tmp_path / "d"))).read()) == {
        "k": [1, 2]}
    assert open(client.download_artifacts(rid, "samples/samples.jsonl", str(tmp_path / "d"))).read() == '{"a": 1}\n'
    assert not Layout(tmp_path).run_record_files(log.run_id).exists()  # the copies go once logged


def test_sync_is_idempotent_and_completes_an_interrupted_one(job, tmp_path):
    with tracking.job_run(job, "t/a", {}, {}) as a:
        a({"m": 1.0}, 0)
    first = mlflow_sync.sync(tmp_path)
    assert mlflow_sync.sync(tmp_path) == first and len(_runs(job)) == 1
    # a sync killed after creating the run, before marking the record: a complete run is adopted, ...
    path = Layout(tmp_path).run_record(a.run_id)
    record = json.loads(path.read_text())
    del record["mlflow_run_id"]
    path.write_text(json.dumps(record))
    assert mlflow_sync.sync(tmp_path) == first and len(_runs(job)) == 1
    # ... a half-logged one (still RUNNING) is replaced
    client = MlflowClient(tracking.tracking_uri(job))
    with tracking.job_run(job, "t/b", {}, {}) as b:
        b({"m": 2.0}, 0)
    exp_id = mlflow_sync.init_store(job)
    half = client.create_run(exp_id, tags={mlflow_sync.RECORD_TAG: b.run_id}, run_name="t/b").info.run_id
    ids = mlflow_sync.sync(tmp_path)
    assert ids[b.run_id] != half and client.get_run(half).info.lifecycle_stage == "deleted"
    assert sorted(r.info.run_name for r in _runs(job)) == ["t/a", "t/b"]
    assert client.get_run(ids[b.run_id]).data.metrics["m"] == 2.0


def test_failed_and_killed_jobs_keep_their_status(job, tmp_path):
    with pytest.raises(RuntimeError):
        with tracking.job_run(job, "t/failed", {}, {}) as failed:
            failed({"m": 1.0}, 0)
            raise RuntimeError("boom")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cm = tracking.job_run(job, "t/killed", {}, {})
    killed = cm.__enter__()  # SIGKILLed inside its run: the record stays RUNNING, its process is gone
    killed({"m": 0.5}, 3)
    killed.flush()
    path = Layout(tmp_path).run_record(killed.run_id)
    path.write_text(json.dumps(json.loads(path.read_text()) | {"pid": dead.pid}))
    live_cm = tracking.job_run(job, "t/live", {}, {})
    live = live_cm.__enter__()  # this process: still running
    ids = mlflow_sync.sync(tmp_path)
    client = MlflowClient(tracking.tracking_uri(job))
    assert client.get_run(ids[failed.run_id]).info.status == "FAILED"
    assert client.get_run(ids[failed.run_id]).data.metrics["m"] == 1.0
    assert client.get_run(ids[killed.run_id]).info.status == "KILLED"
    assert client.get_run(ids[killed.run_id]).data.metrics["m"] == 0.5
    assert live.run_id not in ids and len(_runs(job)) == 2
    live_cm.__exit__(None, None, None)
    assert client.get_run(mlflow_sync.sync(tmp_path)[live.run_id]).info.status == "FINISHED"


@pytest.mark.parametrize("text, why", [("{not json", "is not readable JSON"),
                                       ('{"id": "x"}', "has no valid 'name' (expected a str)"),
                                       ("[]", "is not a JSON object")])
def test_a_corrupt_record_is_one_line_naming_it_and_the_others_are_synced(job, tmp_path, capsys, text, why):
    with tracking.job_run(job, "t/good", {}, {}) as good:
        pass
    bad = Layout(tmp_path).run_record("f" * 32)
    bad.parent.mkdir(parents=True)
    bad.write_text(text)
    with pytest.raises(mlflow_sync.RecordError) as err:
        mlflow_sync.sync(tmp_path)
    assert str(err.value).startswith(f"run record {bad} {why}") and "\n" not in str(err.value)
    assert str(err.value).endswith("move it aside and rerun `scd tracking sync` (its job's results files are "
                                   "unaffected)")
    assert [r.info.run_name for r in _runs(job)] == ["t/good"]
    assert json.loads(Layout(tmp_path).run_record(good.run_id).read_text())["mlflow_run_id"]
    assert cli.main(["tracking", "sync", "--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"scd tracking: error: {err.value}\n"


def test_scd_tracking_sync_and_a_stage_command_run_by_hand(job, tmp_path, capsys):
    with tracking.job_run(job, "t/a", {}, {}):
        pass
    assert cli.main(["tracking", "sync", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"1 run record(s) of {tmp_path} in the MLflow store\n"
    assert [r.info.run_name for r in _runs(job)] == ["t/a"]
    # a stage command by hand logs its own record as it ends; in a workflow ($SCD_MLFLOW_PARENT_RUN) it leaves it
    for parent, expected in ((None, 2), ("p" * 32, 2)):
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", tracking.PARENT_ENV)}
        env |= {tracking.PARENT_ENV: parent} if parent else {}
        code = "\n".join([
            "import sys", "from scd import cli, tracking", "from scd.settings import Job, Tracking",
            f"job = Job(task='pubmedqa', results_dir={str(tmp_path)!r}, mlflow=Tracking(experiment='x'))",
            "def fake(args):", "    with tracking.job_run(job, 'by-hand', {}, {}):", "        pass",
            "cli.cmd_check_config = fake", "cli.STAGES = cli.STAGES + ('check-config',)",
            "sys.exit(cli.main(['check-config']))"])
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        assert len(_runs(job)) == expected
    assert sum(1 for _ in Layout(tmp_path).run_records().glob("*/record.json")) == 3
    # a results directory that is not there: one line
    capsys.readouterr()
    assert cli.main(["tracking", "sync", "--results", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == (f"scd tracking: error: results directory {tmp_path / 'nope'} does not exist: "
                                       "give the one the workflow wrote (the config's results_dir, e.g. "
                                       "results/smoke)\n")
