"""The MLflow store: the parent run of a workflow invocation, and the sync that logs the jobs' run records
(scd/tracking.py) into it, each once, as the runs a job used to create itself.

The store is $MLFLOW_TRACKING_URI, else the config's mlflow.tracking_uri, else SQLite in the results directory.
`init_store` must run once before parallel jobs: concurrent first writers race on the schema migration (the
Snakefile's onstart does, with the parent run). Who syncs: the Snakefile's onsuccess and onerror, a stage command
run by hand (its own records, at its end), and `scd tracking sync` (any time: records of jobs still running are left
for later). A synced record keeps the MLflow run id (`mlflow_run_id`) and the run carries the record's id as tag
scd.run_id, so a second sync, or one interrupted and run again, creates no duplicates.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.entities.view_type import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from scd.data import write_json  # noqa: E402
from scd.layout import Layout  # noqa: E402
from scd.settings import Job  # noqa: E402
from scd.tracking import PARENT_ENV, configured_uri, owner_tags, tracking_uri  # noqa: E402

# the store's creation is said in INFO lines on stderr: a stage command run by hand prints one line, its result
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
RECORD_TAG = "scd.run_id"
__all__ = ["PARENT_ENV", "StoreError", "RecordError", "store_call", "init_store", "start_invocation",
           "end_invocation", "close_stale_runs", "sync", "sync_records", "tracking_uri"]


class StoreError(ValueError):
    """The MLflow store cannot be used (unreadable, or locked for too long): one line naming it and the remedy."""


class RecordError(ValueError):
    """A run record that cannot be read: one line naming its file and the remedy."""


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


def _sqlite_path(uri: str) -> str | None:
    """The SQLite file of the store, None for other stores."""
    return uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None


def uri_call(uri: str, what: str, fn, *args, **kwargs):
    """fn(*args, **kwargs) on the store at `uri`. A locked SQLite store (another process is writing) is retried with
    exponential back-off for up to LOCK_WAIT seconds; locked beyond that, or unreadable, is a StoreError naming the
    store and what to do."""
    delay, deadline = 0.5, time.monotonic() + LOCK_WAIT
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # MLflow and SQLAlchemy wrap sqlite3's errors in their own types
            texts = list(_messages(e))
            path = _sqlite_path(uri)
            if any(m in t for t in texts for m in _LOCKED):
                left = deadline - time.monotonic()
                if left > 0:
                    time.sleep(min(delay, left))
                    delay = min(delay * 2, 30.0)
                    continue
                raise StoreError(
                    f"MLflow store {path or uri} stayed locked for {LOCK_WAIT:.0f} s ({what}): another process holds "
                    "it (a hung job, or a tool writing to it); stop that process and rerun, or use an MLflow server "
                    "(docs/profiles.md)") from None
            bad = next((m for t in texts for m in _UNREADABLE if m in t), None)
            if path and bad:
                raise StoreError(
                    f"MLflow store {path} is not a readable SQLite store ({bad}): move it aside (mv "
                    f"{shlex.quote(path)} {shlex.quote(path + '.bak')}) and rerun; the results files are "
                    "unaffected") from None
            raise


def store_call(job: Job, what: str, fn, *args, **kwargs):
    """uri_call on the job's store."""
    return uri_call(tracking_uri(job), what, fn, *args, **kwargs)


def _init(uri: str, experiment: str, results_dir) -> str:
    # A client bound to the URI, never mlflow.set_tracking_uri: that also sets $MLFLOW_TRACKING_URI for this
    # process and every job it starts, which would then ignore their own configuration.
    client = MlflowClient(uri)
    Layout(results_dir).root.mkdir(parents=True, exist_ok=True)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    artifacts = Layout(results_dir).mlflow_artifacts().resolve().as_uri()
    # the model-training kind: `mlflow ui` shows the experiment's runs, not its GenAI (traces) view
    return client.create_experiment(experiment, artifact_location=artifacts, tags=EXPERIMENT_TAGS)


def init_store(job: Job) -> str:
    """Create the store and the experiment (idempotent); return the experiment id."""
    return store_call(job, "opening it", _init, tracking_uri(job), job.mlflow.experiment, job.results_dir)


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


def _process_gone(host: str | None, pid) -> bool:
    """Whether the process that opened a run has ended: known only on its own host."""
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
    own_store = configured_uri(job) is None  # the results dir's SQLite
    running = client.search_runs([exp_id], "attributes.status = 'RUNNING'", max_results=50000)

    def ours(run) -> bool:
        where = run.data.tags.get("scd.results_dir")
        return where == mine or (where is None and own_store)

    workflows = {r.info.run_id: r for r in running if r.data.tags.get("scd.kind") == "workflow"}
    dead = {rid for rid, r in workflows.items()
            if ours(r) and _process_gone(r.data.tags.get("scd.host"), r.data.tags.get("scd.pid"))}
    stale = []
    for r in running:
        parent = r.data.tags.get("mlflow.parentRunId")
        if ours(r) and (r.info.run_id in dead or (r.info.run_id not in workflows and parent is not None
                                                  and (parent in dead or parent not in workflows))):
            client.set_terminated(r.info.run_id, "KILLED")
            stale.append(r.info.run_id)
    return stale


# ---- the sync -----------------------------------------------------------------------------------------------------

_FIELDS = {"id": str, "name": str, "experiment": str, "tags": dict, "params": dict, "metrics": list,
           "artifacts": list, "start_time": int, "status": str}


def read_record(path: Path) -> dict:
    """A run record, checked; RecordError naming the file if it is not one."""
    remedy = "move it aside and rerun `scd tracking sync` (its job's results files are unaffected)"
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"run record {path} is not readable JSON ({e}): {remedy}") from None
    if not isinstance(record, dict):
        raise RecordError(f"run record {path} is not a JSON object: {remedy}")
    for key, kind in _FIELDS.items():
        if not isinstance(record.get(key), kind):
            raise RecordError(f"run record {path} has no valid {key!r} (expected a {kind.__name__}): {remedy}")
    if record["status"] not in ("RUNNING", "FINISHED", "FAILED", "KILLED"):
        raise RecordError(f"run record {path} has status {record['status']!r}, not RUNNING, FINISHED, FAILED or "
                          f"KILLED: {remedy}")
    return record


@contextmanager
def _sync_lock(runs_dir: Path):
    """One sync at a time per results directory (two would log the same record twice)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / ".sync.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _log_record(record: dict, path: Path, results_dir: Path) -> str:
    """Create the record's MLflow run, complete; return its id. A run left half-logged by an interrupted sync is
    deleted and logged again; a complete one is adopted."""
    uri = record.get("tracking_uri") or f"sqlite:///{Layout(results_dir).mlflow_db().resolve()}"
    call = lambda what, fn, *a, **k: uri_call(uri, what, fn, *a, **k)  # noqa: E731
    exp_id = call("opening it", _init, uri, record["experiment"], results_dir)
    client = MlflowClient(uri)
    found = call("looking for the record's run", client.search_runs, [exp_id],
                 f"tags.`{RECORD_TAG}` = '{record['id']}'", run_view_type=ViewType.ACTIVE_ONLY)
    for run in found:
        if run.info.status != "RUNNING":
            return run.info.run_id
        call("deleting a half-logged run", client.delete_run, run.info.run_id)
    run = call("creating the job's run", client.create_run, exp_id, start_time=record["start_time"],
               tags={**record["tags"], RECORD_TAG: record["id"]}, run_name=record["name"])
    rid = run.info.run_id
    params = [Param(k, v) for k, v in record["params"].items()]
    for i in range(0, len(params), 100):
        call("logging parameters", client.log_batch, rid, params=params[i: i + 100])
    metrics = [Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in record["metrics"]]
    for i in range(0, len(metrics), 1000):
        call("logging metrics", client.log_batch, rid, metrics=metrics[i: i + 1000])
    files = Layout(results_dir).run_record_files(record["id"])
    for a in record["artifacts"]:
        if "json" in a:
            call("logging an artifact", client.log_dict, rid, a["json"], a["name"])
        elif "text" in a:
            call("logging an artifact", client.log_text, rid, a["text"], a["name"])
        elif (files / a["file"]).is_file():
            call("logging an artifact", client.log_artifact, rid, str(files / a["file"]), a.get("folder"))
        else:
            print(f"scd-bench: artifact {files / a['file']} of run record {path} is missing; its run is logged "
                  "without it", file=sys.stderr)
    call("closing the job's run", client.set_terminated, rid, record["status"],
         record.get("end_time") or record.get("updated") or record["start_time"])
    return rid


def sync_records(paths, results_dir: str | Path | None = None) -> dict[str, str]:
    """Log the given run records into MLflow; return {record id: MLflow run id} of those synced (now or before).
    A record still RUNNING is left for a later sync, unless its process is gone: then it is logged as KILLED.
    Unreadable records are skipped and reported at the end (RecordError naming the first)."""
    by_dir: dict[Path, list[Path]] = {}
    for p in paths:
        p = Path(p)
        by_dir.setdefault(Path(results_dir) if results_dir else p.parents[2], []).append(p)
    out, bad = {}, []
    for root, records in by_dir.items():
        with _sync_lock(Layout(root).run_records()):
            for path in sorted(records):
                try:
                    record = read_record(path)
                except RecordError as e:
                    bad.append(e)
                    continue
                if record.get("mlflow_run_id"):
                    out[record["id"]] = record["mlflow_run_id"]
                    continue
                if record["status"] == "RUNNING":
                    if not _process_gone(record.get("host"), record.get("pid")):
                        continue
                    record["status"] = "KILLED"
                    record["end_time"] = record.get("updated") or record["start_time"]
                rid = _log_record(record, path, root)
                record["mlflow_run_id"] = rid
                write_json(path, record)
                shutil.rmtree(Layout(root).run_record_files(record["id"]), ignore_errors=True)
                out[record["id"]] = rid
    if bad:
        more = f" (and {len(bad) - 1} more unreadable run record(s))" if len(bad) > 1 else ""
        raise RecordError(f"{bad[0]}{more}")
    return out


def sync(results_dir: str | Path) -> dict[str, str]:
    """Log every run record of a results directory not logged yet (sync_records)."""
    if not Path(results_dir).is_dir():
        raise FileNotFoundError(f"results directory {results_dir} does not exist: give the one the workflow wrote "
                                "(the config's results_dir, e.g. results/smoke)")
    runs = Layout(results_dir).run_records()
    return sync_records(sorted(runs.glob("*/record.json")) if runs.is_dir() else [], results_dir)
