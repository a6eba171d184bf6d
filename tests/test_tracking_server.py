"""Jobs log to an MLflow tracking server (the cluster setting) instead of the SQLite file in results_dir: a real
`mlflow server` on the loopback, a real stage (prepare, then a tiny student SFT) pointed at it by the config key or
by $MLFLOW_TRACKING_URI, then the server is asked what it holds."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import TINY_SYNTHETIC
from mlflow import MlflowClient

from scd import mlflow_sync, tracking
from scd.config import common_settings, load_config, stage_config

TASK = "synthetic_subdomains"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def tail():
        return (root / "server.log").read_text()[-3000:]

    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{tail()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not answering at {url} after 60 s:\n{tail()}")
            time.sleep(0.5)
        yield url
    finally:
        # the whole group: the server runs its web workers as child processes
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=15)
                break
            except ProcessLookupError:  # already gone (it failed to start)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def config(results, **overrides):
    return load_config("smoke", {"results_dir": str(results), "tasks": [TASK], **overrides,
                                 "task_overrides": {TASK: {"task_options": TINY_SYNTHETIC, "training": {
                                     "student": {"epochs": 1, "batch_size": 32}}}}})


def runs_named(url: str, experiment: str) -> dict:
    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} on the server"
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def test_stages_log_to_the_server_named_in_the_config(server, tmp_path, monkeypatch):
    from scd.stages.prepare import prepare
    from scd.stages.sft import sft

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    cfg = config(tmp_path, mlflow={"experiment": "via-config", "tracking_uri": server})
    # as the workflow does: a parent run for the invocation, found by the jobs through the environment
    parent = mlflow_sync.start_invocation(common_settings(cfg))
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    prepare(stage_config(cfg, TASK, "prepare"), tmp_path / "data")
    summary = sft(stage_config(cfg, TASK, "sft", "student"), 0, tmp_path / "data", tmp_path / "student")
    mlflow_sync.sync(tmp_path)  # as the workflow's end does: the jobs' run records, then the parent run
    mlflow_sync.end_invocation(common_settings(cfg), parent, ok=True)

    runs = runs_named(server, "via-config")
    assert set(runs) == {"workflow-smoke", f"{TASK}/prepare", f"{TASK}/student_sft/seed0"}
    assert runs["workflow-smoke"].info.status == "FINISHED"
    prep, train = runs[f"{TASK}/prepare"], runs[f"{TASK}/student_sft/seed0"]
    assert prep.data.tags["mlflow.parentRunId"] == parent == train.data.tags["mlflow.parentRunId"]
    counts = json.loads((tmp_path / "data" / "manifest.json").read_text())["counts"]
    assert prep.data.params["split.train.n"] == str(counts["train"])
    assert train.info.status == "FINISHED" and train.data.tags["scd.run_id"] == summary["run_id"]
    assert train.data.params["seed"] == "0" and "env.version.mlflow" in train.data.params
    assert train.data.metrics["best_val_score"] == pytest.approx(summary["best_val_score"])
    client = MlflowClient(tracking_uri=server)
    assert "manifest.json" in {a.path for a in client.list_artifacts(prep.info.run_id)}
    manifest = client.download_artifacts(prep.info.run_id, "manifest.json", str(tmp_path))
    assert TASK in open(manifest).read()
    # the server holds the runs; artifact files stay in results_dir (on the shared filesystem a cluster run has
    # anyway), where the experiment's artifact location points; and nothing went to the SQLite default
    assert (tmp_path / "mlartifacts").is_dir() and not (tmp_path / "mlflow.db").exists()


def test_environment_variable_wins_over_the_config(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    stray = tmp_path / "stray.db"
    cfg = config(tmp_path, mlflow={"experiment": "via-env", "tracking_uri": f"sqlite:///{stray}"})
    with tracking.job_run(common_settings(cfg), "probe", {"stage": "probe"}, {"answer": 42}) as log:
        log({"loss": 0.25}, step=3)
        log.artifact_text("hello", "note.txt")
    mlflow_sync.sync(tmp_path)

    (run,) = runs_named(server, "via-env").values()
    assert run.info.status == "FINISHED" and run.data.params["answer"] == "42"
    assert run.data.metrics["loss"] == 0.25
    artifacts = MlflowClient(tracking_uri=server).list_artifacts(run.info.run_id)
    assert [a.path for a in artifacts] == ["job.json", "note.txt"]
    assert not stray.exists()
