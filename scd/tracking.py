"""Job runs as records on disk, logged into MLflow later by scd/mlflow_sync.py (the offline-then-sync pattern).

A workflow job does not import MLflow nor open its store: `job_run` writes a run record (JSON, rewritten
atomically) under the results directory (scd/layout.py: run_record) with everything the MLflow run will hold: name,
tags (incl. mlflow.parentRunId from $SCD_MLFLOW_PARENT_RUN), params, metrics with their steps and timestamps, small
JSON/text artifacts inline and copies of artifact files, start and end times, status RUNNING/FINISHED/FAILED, and
the host and pid of the job. `scd tracking sync`, the workflow's end (Snakefile onsuccess/onerror) and a stage
command run by hand log finished records into the MLflow store: $MLFLOW_TRACKING_URI, else the config's
mlflow.tracking_uri, else SQLite in the results directory (clusters should use an MLflow server: SQLite on a network
filesystem is unsafe).
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import is_dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from scd.checkout import git_state
from scd.data import write_json
from scd.dicts import flatten
from scd.layout import Layout
from scd.runtime import native_bf16
from scd.settings import Job, to_dict

PARENT_ENV = "SCD_MLFLOW_PARENT_RUN"
PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "trl", "mlflow", "snakemake", "scd-bench")
RECORD_FORMAT = 1
_WRITTEN: list[Path] = []  # the records this process wrote (a stage command run by hand syncs them at its end)


# Every function takes the job's settings (scd.settings.Job: results_dir, profile, mlflow.experiment,
# mlflow.tracking_uri).

def configured_uri(job: Job) -> str | None:
    """The MLflow store the job names ($MLFLOW_TRACKING_URI, else the config's), None for the results directory's
    own SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or job.mlflow.tracking_uri or None


def tracking_uri(job: Job) -> str:
    return configured_uri(job) or f"sqlite:///{Layout(job.results_dir).mlflow_db().resolve()}"


def owner_tags(job: Job) -> dict[str, str]:
    """The tag that says which results directory a run belongs to (stores may be shared: an MLflow server)."""
    return {"scd.results_dir": str(Path(job.results_dir).resolve())}


def environment(device: str) -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform(), "device": device,
           "torch_threads": str(torch.get_num_threads()), "cpu_count": str(os.cpu_count()),
           "native_bf16": str(native_bf16(torch.device(device).type))}  # what precision: auto resolves to
    for pkg in PACKAGES:
        try:
            env[f"version.{pkg}"] = version(pkg)
        except PackageNotFoundError:
            env[f"version.{pkg}"] = "not installed"
    return env


def provenance(job: Job) -> dict[str, str]:
    """What code ran the job, as MLflow params: code.commit and code.dirty (the checkout), code.fingerprint (the
    job's `code` setting: its stage's and method's source, scd/config.py code_files) and plugin.<name>.version for
    each installed plugin the job's method comes from (its `plugins` setting)."""
    commit, dirty = git_state()
    out = {"code.commit": commit, "code.dirty": dirty}
    if getattr(job, "code", ""):
        out["code.fingerprint"] = job.code
    for name, plugin_version in sorted((getattr(job, "plugins", None) or {}).items()):
        out[f"plugin.{name}.version"] = plugin_version
    return out


def now_ms() -> int:
    return int(time.time() * 1000)


class Record:
    """One job's run record: a dict saved as JSON (atomically) at Layout.run_record(id); artifact files are copied
    beside it (Layout.run_record_files(id)) until the sync has logged them."""

    def __init__(self, job: Job, name: str, tags: dict[str, str]):
        self.id = uuid.uuid4().hex  # the same form as an MLflow run id; the synced run carries it as tag scd.run_id
        self.layout = Layout(job.results_dir)
        self.path = self.layout.run_record(self.id)
        self.data = {"format": RECORD_FORMAT, "id": self.id, "name": name, "experiment": job.mlflow.experiment,
                     "tracking_uri": configured_uri(job), "tags": tags, "params": {}, "metrics": [],
                     "artifacts": [], "start_time": now_ms(), "end_time": None, "status": "RUNNING",
                     "host": socket.gethostname(), "pid": os.getpid()}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.data["updated"] = now_ms()
        write_json(self.path, self.data)

    def finish(self, status: str) -> None:
        self.data["status"], self.data["end_time"] = status, now_ms()
        self.save()


class RunLogger:
    """What a job logs, into its run record: metrics are buffered and the record rewritten every `flush_at` of
    them."""

    def __init__(self, record: Record, flush_at: int = 200):
        self.record, self.flush_at, self._pending = record, flush_at, 0

    @property
    def run_id(self) -> str:
        """The record's id: the summaries' run_id; the MLflow run it becomes has it as tag scd.run_id."""
        return self.record.id

    def __call__(self, metrics: dict, step: int) -> None:
        ts = now_ms()
        self.record.data["metrics"] += [[k, float(v), ts, int(step)] for k, v in metrics.items()]
        self._pending += len(metrics)
        if self._pending >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        self.record.save()
        self._pending = 0

    def params(self, params: dict) -> None:
        # MLflow keys allow only [\w-. :/]; method names such as "scd+aw" appear in config keys.
        self.record.data["params"].update({re.sub(r"[^\w\-. :/]", "_", k): str(v)[:6000] for k, v in params.items()})
        self.record.save()

    def _artifact(self, entry: dict) -> None:
        self.record.data["artifacts"].append(entry)
        self.record.save()

    def artifact_json(self, obj, name: str) -> None:
        self._artifact({"name": name, "json": obj})

    def artifact_text(self, text: str, name: str) -> None:
        self._artifact({"name": name, "text": text})

    def artifact_file(self, path: str | Path, folder: str | None = None) -> None:
        """A copy beside the record (the job may replace or move the file before the sync)."""
        files = self.record.layout.run_record_files(self.record.id)
        stored = Path(f"{len(self.record.data['artifacts'])}") / Path(path).name
        (files / stored).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, files / stored)
        self._artifact({"file": str(stored), "folder": folder})


def records_written() -> list[Path]:
    """The run records this process wrote."""
    return list(_WRITTEN)


@contextmanager
def job_run(job: Job, name: str, tags: dict, params: dict, device: str = "cpu"):
    """The run record of one job: tagged, parametrised (`params`, with settings objects as their fields), its
    environment recorded; FAILED if the job raises."""
    all_tags = {f"scd.{k}": str(v) for k, v in tags.items()}
    all_tags["scd.profile"] = job.profile
    all_tags.update(owner_tags(job))
    if os.environ.get(PARENT_ENV):
        all_tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
    record = Record(job, name, all_tags)
    record.save()
    _WRITTEN.append(record.path)
    logger = RunLogger(record)
    try:
        params = {k: to_dict(v) if is_dataclass(v) else v for k, v in params.items()}
        logger.params({**flatten(params), **{f"env.{k}": v for k, v in environment(device).items()},
                       **provenance(job)})
        logger.artifact_json({"argv": sys.argv, "config": to_dict(job)}, "job.json")
        yield logger
        record.finish("FINISHED")
    except BaseException:
        record.finish("FAILED")
        raise
