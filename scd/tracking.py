"""MLflow: one run per workflow job, grouped under a parent run per workflow invocation.

The store defaults to SQLite in the results directory ($MLFLOW_TRACKING_URI, or the config's mlflow.tracking_uri,
wins: clusters should use an MLflow server, SQLite on a network filesystem is unsafe). `init_store` must run once
before parallel jobs: concurrent first writers race on the schema migration.
"""
from __future__ import annotations

import os
import platform
import re
import sys
import time
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import torch  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from scd.dicts import flatten  # noqa: E402
from scd.layout import Layout  # noqa: E402

PARENT_ENV = "SCD_MLFLOW_PARENT_RUN"
PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "trl", "mlflow", "snakemake", "scd-bench")


def tracking_uri(cfg: dict) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if (cfg.get("mlflow") or {}).get("tracking_uri"):
        return cfg["mlflow"]["tracking_uri"]
    return f"sqlite:///{Layout(cfg['results_dir']).mlflow_db().resolve()}"


def init_store(cfg: dict) -> str:
    """Create the store and the experiment (idempotent); return the experiment id."""
    # A client bound to the URI, never mlflow.set_tracking_uri: that also sets $MLFLOW_TRACKING_URI for this
    # process and every job it starts, which would then ignore their own configuration.
    client = MlflowClient(tracking_uri(cfg))
    Layout(cfg["results_dir"]).root.mkdir(parents=True, exist_ok=True)
    name = (cfg.get("mlflow") or {}).get("experiment", "scd-bench")
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifacts = Layout(cfg["results_dir"]).mlflow_artifacts().resolve().as_uri()
    return client.create_experiment(name, artifact_location=artifacts)


def start_invocation(cfg: dict) -> str:
    """The parent run of one workflow invocation; jobs find it through $SCD_MLFLOW_PARENT_RUN."""
    exp_id = init_store(cfg)
    run = MlflowClient(tracking_uri(cfg)).create_run(
        exp_id, run_name=f"workflow-{cfg.get('profile', 'default')}",
        tags={"scd.kind": "workflow", "scd.profile": cfg.get("profile", "default")})
    return run.info.run_id


def end_invocation(cfg: dict, run_id: str, ok: bool) -> None:
    MlflowClient(tracking_uri(cfg)).set_terminated(run_id, "FINISHED" if ok else "FAILED")


def environment(device: str) -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform(), "device": device,
           "torch_threads": str(torch.get_num_threads()), "cpu_count": str(os.cpu_count())}
    for pkg in PACKAGES:
        try:
            env[f"version.{pkg}"] = version(pkg)
        except PackageNotFoundError:
            env[f"version.{pkg}"] = "not installed"
    return env


class RunLogger:
    """Buffers metrics and sends them in batches: per-step logging to SQLite one call at a time is slow."""

    def __init__(self, client: MlflowClient, run_id: str, flush_at: int = 200):
        self.client, self.run_id, self.flush_at, self._buf = client, run_id, flush_at, []

    def __call__(self, metrics: dict, step: int) -> None:
        ts = int(time.time() * 1000)
        self._buf += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        if len(self._buf) >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self._buf), 1000):
            self.client.log_batch(self.run_id, metrics=self._buf[i: i + 1000])
        self._buf = []

    def params(self, params: dict) -> None:
        # MLflow keys allow only [\w-. :/]; method names such as "scd+aw" appear in config keys.
        items = [Param(re.sub(r"[^\w\-. :/]", "_", k), str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i: i + 100])

    def artifact_json(self, obj, name: str) -> None:
        self.client.log_dict(self.run_id, obj, name)

    def artifact_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def artifact_file(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)


@contextmanager
def job_run(cfg: dict, name: str, tags: dict, params: dict, device: str = "cpu"):
    """An MLflow run for one job: tagged, parametrised, its environment recorded; FAILED if the job raises."""
    exp_id = init_store(cfg)
    client = MlflowClient(tracking_uri(cfg))
    all_tags = {f"scd.{k}": str(v) for k, v in tags.items()}
    all_tags["scd.profile"] = str(cfg.get("profile", "default"))
    if os.environ.get(PARENT_ENV):
        all_tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
    run = client.create_run(exp_id, run_name=name, tags=all_tags)
    logger = RunLogger(client, run.info.run_id)
    try:
        logger.params({**flatten(params), **{f"env.{k}": v for k, v in environment(device).items()}})
        logger.artifact_json({"argv": sys.argv, "config": cfg}, "job.json")
        yield logger
        logger.flush()
        client.set_terminated(run.info.run_id, "FINISHED")
    except BaseException:
        logger.flush()
        client.set_terminated(run.info.run_id, "FAILED")
        raise
