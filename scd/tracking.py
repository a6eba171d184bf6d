"""MLflow: one run per workflow job, grouped under a parent run per workflow invocation.

The store defaults to SQLite in the results directory ($MLFLOW_TRACKING_URI, or the config's mlflow.tracking_uri,
wins: clusters should use an MLflow server, SQLite on a network filesystem is unsafe). `init_store` must run once
before parallel jobs: concurrent first writers race on the schema migration.
"""
from __future__ import annotations

import os
import platform
import re
import shlex
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import is_dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import torch  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from scd.checkout import git_state
from scd.dicts import flatten  # noqa: E402
from scd.layout import Layout  # noqa: E402
from scd.settings import Job, to_dict  # noqa: E402

PARENT_ENV = "SCD_MLFLOW_PARENT_RUN"
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "trl", "mlflow", "snakemake", "scd-bench")


# Every function takes the job's settings (scd.settings.Job: results_dir, profile, mlflow.experiment,
# mlflow.tracking_uri).

def tracking_uri(job: Job) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if job.mlflow.tracking_uri:
        return job.mlflow.tracking_uri
    return f"sqlite:///{Layout(job.results_dir).mlflow_db().resolve()}"


class StoreError(ValueError):
    """The MLflow store cannot be used (unreadable, or locked for too long): one line naming it and the remedy."""


LOCK_WAIT = 150.0  # seconds a locked store is retried, with back-off, before the job gives up
_LOCKED = ("database is locked", "database table is locked")
_UNREADABLE = ("file is not a database", "database disk image is malformed", "file is encrypted or is not a database",
               "unable to open database file", "no such table", "no such column")


def _messages(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield str(e)
        e = e.__cause__ or e.__context__


def _store_path(job: Job) -> str | None:
    """The SQLite file of the store, None for other stores."""
    uri = tracking_uri(job)
    return uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None


def store_call(job: Job, what: str, fn, *args, **kwargs):
    """fn(*args, **kwargs) on the job's store. A locked SQLite store (another process is writing) is retried with
    exponential back-off for up to LOCK_WAIT seconds; locked beyond that, or unreadable, is a StoreError naming the
    store and what to do."""
    delay, deadline = 0.5, time.monotonic() + LOCK_WAIT
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # MLflow and SQLAlchemy wrap sqlite3's errors in their own types
            texts = list(_messages(e))
            where = _store_path(job) or tracking_uri(job)
            if any(m in t for t in texts for m in _LOCKED):
                left = deadline - time.monotonic()
                if left > 0:
                    time.sleep(min(delay, left))
                    delay = min(delay * 2, 30.0)
                    continue
                raise StoreError(
                    f"MLflow store {where} stayed locked for {LOCK_WAIT:.0f} s ({what}): another process holds it "
                    "(a hung job, or a tool writing to it); stop that process and rerun, or use an MLflow server "
                    "(docs/profiles.md)") from None
            path = _store_path(job)
            bad = next((m for t in texts for m in _UNREADABLE if m in t), None)
            if path and bad:
                raise StoreError(
                    f"MLflow store {path} is not a readable SQLite store ({bad}): move it aside (mv "
                    f"{shlex.quote(path)} {shlex.quote(path + '.bak')}) and rerun; the results files are "
                    "unaffected") from None
            raise


def init_store(job: Job) -> str:
    """Create the store and the experiment (idempotent); return the experiment id."""
    return store_call(job, "opening it", _init_store, job)


def _init_store(job: Job) -> str:
    # A client bound to the URI, never mlflow.set_tracking_uri: that also sets $MLFLOW_TRACKING_URI for this
    # process and every job it starts, which would then ignore their own configuration.
    client = MlflowClient(tracking_uri(job))
    Layout(job.results_dir).root.mkdir(parents=True, exist_ok=True)
    exp = client.get_experiment_by_name(job.mlflow.experiment)
    if exp is not None:
        return exp.experiment_id
    artifacts = Layout(job.results_dir).mlflow_artifacts().resolve().as_uri()
    # the model-training kind: `mlflow ui` shows the experiment's runs, not its GenAI (traces) view
    return client.create_experiment(job.mlflow.experiment, artifact_location=artifacts, tags=EXPERIMENT_TAGS)


def start_invocation(job: Job) -> str:
    """The parent run of one workflow invocation; jobs find it through $SCD_MLFLOW_PARENT_RUN. Runs of this results
    directory left RUNNING by an invocation that was killed are closed as KILLED first."""
    exp_id = init_store(job)
    client = MlflowClient(tracking_uri(job))
    stale = store_call(job, "closing stale runs", close_stale_runs, job, client, exp_id)
    if stale:
        print(f"scd-bench: {len(stale)} MLflow run(s) of {job.results_dir} left RUNNING by a killed invocation or "
              "job marked KILLED", file=sys.stderr)
    tags = {"scd.kind": "workflow", "scd.profile": job.profile, **owner_tags(job),
            "scd.host": socket.gethostname(), "scd.pid": str(os.getpid())}
    run = store_call(job, "creating the workflow run", client.create_run, exp_id,
                     run_name=f"workflow-{job.profile}", tags=tags)
    return run.info.run_id


def end_invocation(job: Job, run_id: str, ok: bool) -> None:
    store_call(job, "closing the workflow run", MlflowClient(tracking_uri(job)).set_terminated, run_id,
               "FINISHED" if ok else "FAILED")


def owner_tags(job: Job) -> dict[str, str]:
    """The tag that says which results directory a run belongs to (stores may be shared: an MLflow server)."""
    return {"scd.results_dir": str(Path(job.results_dir).resolve())}


def _process_gone(tags: dict) -> bool:
    """Whether the workflow process that opened a run has ended: known only on its own host."""
    host, pid = tags.get("scd.host"), tags.get("scd.pid")
    if host is None or pid is None:
        return True  # opened before runs recorded their process: Snakemake's lock allows one invocation at a time
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def close_stale_runs(job: Job, client: MlflowClient, exp_id: str) -> list[str]:
    """Mark KILLED this results directory's runs still RUNNING whose process is gone (SIGKILL, power loss): workflow
    runs whose snakemake process has ended, and job runs whose workflow run is such a one or has ended. Runs of other
    results directories, runs started outside a workflow and runs of a live invocation are left alone."""
    mine = owner_tags(job)["scd.results_dir"]
    own_store = not (os.environ.get("MLFLOW_TRACKING_URI") or job.mlflow.tracking_uri)  # the results dir's SQLite
    running = client.search_runs([exp_id], "attributes.status = 'RUNNING'", max_results=50000)

    def ours(run) -> bool:
        where = run.data.tags.get("scd.results_dir")
        return where == mine or (where is None and own_store)

    workflows = {r.info.run_id: r for r in running if r.data.tags.get("scd.kind") == "workflow"}
    dead = {rid for rid, r in workflows.items() if ours(r) and _process_gone(r.data.tags)}
    stale = []
    for r in running:
        parent = r.data.tags.get("mlflow.parentRunId")
        if ours(r) and (r.info.run_id in dead or (r.info.run_id not in workflows and parent is not None
                                                  and (parent in dead or parent not in workflows))):
            client.set_terminated(r.info.run_id, "KILLED")
            stale.append(r.info.run_id)
    return stale


def environment(device: str) -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform(), "device": device,
           "torch_threads": str(torch.get_num_threads()), "cpu_count": str(os.cpu_count())}
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


class RunLogger:
    """Buffers metrics and sends them in batches: per-step logging to SQLite one call at a time is slow."""

    def __init__(self, client: MlflowClient, run_id: str, flush_at: int = 200, job: Job | None = None):
        self.client, self.run_id, self.flush_at, self._buf, self.job = client, run_id, flush_at, [], job

    def _call(self, what: str, fn, *args, **kwargs):
        return fn(*args, **kwargs) if self.job is None else store_call(self.job, what, fn, *args, **kwargs)

    def __call__(self, metrics: dict, step: int) -> None:
        ts = int(time.time() * 1000)
        self._buf += [Metric(k, float(v), ts, step) for k, v in metrics.items()]
        if len(self._buf) >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self._buf), 1000):
            self._call("logging metrics", self.client.log_batch, self.run_id, metrics=self._buf[i: i + 1000])
        self._buf = []

    def params(self, params: dict) -> None:
        # MLflow keys allow only [\w-. :/]; method names such as "scd+aw" appear in config keys.
        items = [Param(re.sub(r"[^\w\-. :/]", "_", k), str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._call("logging parameters", self.client.log_batch, self.run_id, params=items[i: i + 100])

    def artifact_json(self, obj, name: str) -> None:
        self.client.log_dict(self.run_id, obj, name)

    def artifact_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def artifact_file(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)


@contextmanager
def job_run(job: Job, name: str, tags: dict, params: dict, device: str = "cpu"):
    """An MLflow run for one job: tagged, parametrised (`params`, with settings objects as their fields), its
    environment recorded; FAILED if the job raises."""
    exp_id = init_store(job)
    client = MlflowClient(tracking_uri(job))
    all_tags = {f"scd.{k}": str(v) for k, v in tags.items()}
    all_tags["scd.profile"] = job.profile
    all_tags.update(owner_tags(job))
    if os.environ.get(PARENT_ENV):
        all_tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
    run = store_call(job, "creating the job's run", client.create_run, exp_id, run_name=name, tags=all_tags)
    logger = RunLogger(client, run.info.run_id, job=job)
    try:
        params = {k: to_dict(v) if is_dataclass(v) else v for k, v in params.items()}
        logger.params({**flatten(params), **{f"env.{k}": v for k, v in environment(device).items()},
                       **provenance(job)})
        logger.artifact_json({"argv": sys.argv, "config": to_dict(job)}, "job.json")
        yield logger
        logger.flush()
        store_call(job, "closing the job's run", client.set_terminated, run.info.run_id, "FINISHED")
    except BaseException:
        logger.flush()
        client.set_terminated(run.info.run_id, "FAILED")
        raise
