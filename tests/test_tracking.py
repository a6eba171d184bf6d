"""The MLflow store a run creates: one experiment of the model-training kind, jobs as runs with their settings."""
from mlflow.tracking import MlflowClient

from scd import tracking
from scd.settings import Job, Tracking


def test_the_experiment_opens_on_its_runs_and_jobs_log_their_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    job = Job(task="pubmedqa", results_dir=str(tmp_path), mlflow=Tracking(experiment="x"))
    exp_id = tracking.init_store(job)
    assert tracking.init_store(job) == exp_id  # idempotent
    client = MlflowClient(tracking.tracking_uri(job))
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    with tracking.job_run(job, "pubmedqa/prepare", {"task": "pubmedqa"}, {"config": job, "seed": 3}) as log:
        log({"m": 1.0}, 0)
    run = client.get_run(log.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["scd.task"] == "pubmedqa"
    assert run.data.params["config.evaluation.batch_size"] == str(job.evaluation.batch_size)
    assert run.data.params["seed"] == "3" and run.data.metrics["m"] == 1.0
