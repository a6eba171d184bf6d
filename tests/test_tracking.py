"""The MLflow store a run creates: one experiment of the model-training kind, jobs as runs with their settings,
logged from the jobs' run records by the sync (scd/mlflow_sync.py)."""
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from scd import mlflow_sync, tracking
from scd.settings import Job, Tracking


def test_the_experiment_opens_on_its_runs_and_jobs_log_their_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    job = Job(task="pubmedqa", results_dir=str(tmp_path), mlflow=Tracking(experiment="x"))
    exp_id = mlflow_sync.init_store(job)
    assert mlflow_sync.init_store(job) == exp_id  # idempotent
    client = MlflowClient(tracking.tracking_uri(job))
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    with tracking.job_run(job, "pubmedqa/prepare", {"task": "pubmedqa"}, {"config": job, "seed": 3}) as log:
        log({"m": 1.0}, 0)
    run = client.get_run(mlflow_sync.sync(tmp_path)[log.run_id])
    assert run.info.status == "FINISHED" and run.data.tags["scd.task"] == "pubmedqa"
    assert run.data.params["config.evaluation.batch_size"] == str(job.evaluation.batch_size)
    assert run.data.params["seed"] == "3" and run.data.metrics["m"] == 1.0


def _job(tmp_path, monkeypatch, results=None):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Job(task="pubmedqa", results_dir=str(results or tmp_path), mlflow=Tracking(experiment="x"))


def test_an_unreadable_store_is_one_line_with_its_path_and_the_remedy(tmp_path, monkeypatch):
    results = tmp_path / "with space"
    results.mkdir()
    job = _job(tmp_path, monkeypatch, results)
    db = results / "mlflow.db"
    db.write_text("not a database\n" * 100)
    expected = (f"MLflow store {db} is not a readable SQLite store (file is not a database): move it aside "
                f"(mv '{db}' '{db}.bak') and rerun; the results files are unaffected")
    with tracking.job_run(job, "t/prepare", {}, {}):
        pass
    for call in (lambda: mlflow_sync.init_store(job), lambda: mlflow_sync.start_invocation(job),
                 lambda: mlflow_sync.sync(results)):
        with pytest.raises(mlflow_sync.StoreError) as err:
            call()
        assert str(err.value) == expected
    assert db.read_text().startswith("not a database")  # left as it was


def _hold_lock(db, seconds):
    con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    con.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(seconds, lambda: (con.execute("COMMIT"), con.close()))
    release.start()
    return release


def test_a_locked_store_is_retried_then_named(tmp_path, monkeypatch):
    job = _job(tmp_path, monkeypatch)
    mlflow_sync.init_store(job)
    # locked longer than one attempt waits (sqlite's busy timeout): the retries outlast it
    _hold_lock(tmp_path / "mlflow.db", 8.0)
    t0 = time.monotonic()
    run_id = mlflow_sync.start_invocation(job)
    assert time.monotonic() - t0 >= 7.5
    assert MlflowClient(tracking.tracking_uri(job)).get_run(run_id).info.status == "RUNNING"
    # locked beyond the retries: one line
    monkeypatch.setattr(mlflow_sync, "LOCK_WAIT", 0.5)
    release = _hold_lock(tmp_path / "mlflow.db", 30.0)
    try:
        with pytest.raises(mlflow_sync.StoreError, match=r"^MLflow store .*mlflow.db stayed locked for 0 s \(opening "
                                                      r"it\): another process holds it"):
            mlflow_sync.init_store(job)
    finally:
        release.cancel()
        release.function()


def test_runs_left_running_by_a_killed_invocation_are_closed_as_killed(tmp_path, monkeypatch):
    job = _job(tmp_path, monkeypatch)
    other = Job(task="pubmedqa", results_dir=str(tmp_path / "elsewhere"), mlflow=Tracking(experiment="x"))
    exp_id = mlflow_sync.init_store(job)
    client = MlflowClient(tracking.tracking_uri(job))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def run(parent=None, owner=job, **tags):
        t = {**tracking.owner_tags(owner), **tags} | ({"mlflow.parentRunId": parent} if parent else {})
        return client.create_run(exp_id, tags=t).info.run_id

    me = {"scd.host": socket.gethostname()}
    killed_wf = run(**{"scd.kind": "workflow", "scd.pid": str(dead.pid)} | me)
    killed_job = run(killed_wf)
    live_wf = run(**{"scd.kind": "workflow", "scd.pid": str(os.getpid())} | me)  # an invocation still running
    live_job = run(live_wf)
    ended_wf = run(**{"scd.kind": "workflow", "scd.pid": str(dead.pid)} | me)
    client.set_terminated(ended_wf, "FAILED")
    orphan_job = run(ended_wf)  # SIGKILLed while its workflow went on and failed
    by_hand = run()  # a job started outside a workflow
    remote_wf = run(**{"scd.kind": "workflow", "scd.pid": "1", "scd.host": "another-host"})
    elsewhere = run(run(owner=other, **{"scd.kind": "workflow", "scd.pid": str(dead.pid)} | me), owner=other)
    new = mlflow_sync.start_invocation(job)
    status = {r: client.get_run(r).info.status for r in (killed_wf, killed_job, live_wf, live_job, orphan_job,
                                                         by_hand, remote_wf, elsewhere, new)}
    assert status == {killed_wf: "KILLED", killed_job: "KILLED", orphan_job: "KILLED", live_wf: "RUNNING",
                      live_job: "RUNNING", by_hand: "RUNNING", remote_wf: "RUNNING", elsewhere: "RUNNING",
                      new: "RUNNING"}
    tags = client.get_run(new).data.tags
    assert tags["scd.pid"] == str(os.getpid()) and tags["scd.results_dir"] == str(tmp_path.resolve())
