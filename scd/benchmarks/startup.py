"""The fixed cost of a workflow job: from process start until the stage's own work begins, plus tracking; and the
wall time of the listing commands. Target: at most 2 s per job, under 2 s per listing.

    python -m scd.benchmarks.startup                              # this checkout
    python -m scd.benchmarks.startup --reference ../previous     # side by side with another checkout

Each stage command (prepare, sft, teacher-outputs, distill, evaluate) is started as the Snakefile starts it
(`scd <stage> --task ... --config <job JSON> ...`, inside a workflow: $SCD_MLFLOW_PARENT_RUN set) by a small driver
that times, on the system-wide monotonic clock, from just before the process is spawned:

- interpreter: until the driver's first line runs (Python's own start-up and site packages);
- torch, transformers: `import torch`; then transformers with its Llama model classes (what every model job loads
  before its first forward pass, whenever it imports them);
- other imports: the `scd` command and the stage's module with everything else it imports (MLflow, in code that
  logs to it from the job);
- config: argument parsing and reading the job's settings, until the stage's entry function is called (the driver
  wraps it: the mark is the moment the stage's own work would begin; the stage itself does not run);
- tracking: opening and closing the job's run (`scd.tracking.job_run` with the job's settings and an empty body):
  an MLflow run in an existing store for code that logs from the job, a run record for code that defers it.

`to first work` is the sum of all but tracking; `job fixed cost` adds tracking. Code that defers MLflow logging pays
a sync later, in one process for the whole workflow: `tracking sync` times `scd tracking sync` on the records the
repeats wrote (its MLflow import and store opening included; per record: divided by their number); it is not part
of any job. The listing commands are timed as whole processes (`python -m scd.cli ...`).

Each stage row gives wall seconds, then (after `|`) the CPU seconds of the job's process for the same part: on a
shared machine the CPU time is the steadier figure (waiting for a core is not in it). Sides alternate (this,
reference, this, ...) within each repeat and medians are printed, with `ratio` = this / reference. The machine is
shared: read the ratios, and the absolute times only with the load printed beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scd.benchmarks.record import add_save_argument, figure, save

HERE = Path(__file__).resolve().parents[2]
TASK = "synthetic_subdomains"
STAGES = {  # command: (stage module, entry function, stage_config's stage and name, extra arguments)
    "prepare": ("scd.stages.prepare", "prepare", ("prepare", None), ["--out", "{w}/data"]),
    "sft": ("scd.stages.sft", "sft", ("sft", "student"),
            ["--seed", "0", "--role", "student", "--data", "{w}/data", "--out", "{w}/student"]),
    "teacher-outputs": ("scd.stages.teacher_outputs", "write_teacher_outputs", ("teacher_outputs", None),
                        ["--seed", "0", "--data", "{w}/data", "--teacher", "{w}/teacher", "--out", "{w}/to"]),
    "distill": ("scd.stages.distill", "distill", ("distill", "td"),
                ["--seed", "0", "--method", "td", "--data", "{w}/data", "--teacher", "{w}/teacher", "--student",
                 "{w}/student", "--out", "{w}/td"]),
    "evaluate": ("scd.stages.evaluate", "evaluate_model", ("zero_shot", "student"),
                 ["--seed", "0", "--zero-shot", "student", "--name", "student_zero_shot", "--data", "{w}/data",
                  "--out", "{w}/eval.json"]),
}
LISTINGS = (["--help"], ["tasks", "list"], ["methods", "list"])
PARTS = ("interpreter", "torch", "transformers", "other imports", "config", "tracking")

# The stage process: argv[1] = parent's monotonic time at spawn, argv[2] = stage module, argv[3] = entry function,
# then the `scd` arguments. Prints one JSON line of marks.
DRIVER = r"""
import time
def now():
    return [time.monotonic(), time.process_time()]
marks = {"interpreter": now()}
import sys, json, importlib
import torch
marks["torch"] = now()
import transformers
transformers.LlamaForCausalLM, transformers.AutoModelForCausalLM
marks["transformers"] = now()
from scd import cli
stage = importlib.import_module(sys.argv[2])
from scd import tracking
marks["other imports"] = now()

class Reached(BaseException):
    pass

def reached(job, *args, **kwargs):
    marks["config"] = now()
    raise Reached(job)

setattr(stage, sys.argv[3], reached)
try:
    cli.main(sys.argv[4:])
    raise SystemExit("the stage's entry function was not reached")
except Reached as r:
    job = r.args[0]
with tracking.job_run(job, "startup-benchmark", {"stage": "benchmark"}, {"seed": 0}):
    pass
marks["tracking"] = now()
print(json.dumps({"start": [float(sys.argv[1]), 0.0], **marks}))
"""

JOB_JSON = r"""
import json, sys
from scd.config import load_config, stage_config
from scd.settings import to_json
cfg = load_config("smoke", {"results_dir": sys.argv[1], "tasks": [sys.argv[2]]})
print(json.dumps({s: to_json(stage_config(cfg, sys.argv[2], *spec)) for s, spec in json.loads(sys.argv[3]).items()}))
"""


def _env(code_dir: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code_dir), SCD_MLFLOW_PARENT_RUN="0" * 32)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _run(code_dir: Path, args: list[str], cwd: Path) -> str:
    done = subprocess.run([sys.executable, *args], env=_env(code_dir), cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{code_dir}: {' '.join(args[:3])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


class Side:
    """One checkout: its job settings, results directory and MLflow store (opened once, as the workflow does)."""

    def __init__(self, name: str, code_dir: Path, work: Path):
        self.name, self.code, self.work = name, code_dir, work / name
        self.results = self.work / "results"
        self.results.mkdir(parents=True)
        specs = {s: list(spec[2]) for s, spec in STAGES.items()}
        self.jobs = json.loads(_run(code_dir, ["-c", JOB_JSON, str(self.results), TASK, json.dumps(specs)],
                                    self.work).strip().splitlines()[-1])
        has_sync = (code_dir / "scd" / "mlflow_sync.py").is_file()
        self.deferred = has_sync
        store = "from scd import mlflow_sync as m" if has_sync else "from scd import tracking as m"
        _run(code_dir, ["-c", f"import sys; {store}; from scd.settings import job_from_json; "
                              "m.init_store(job_from_json('prepare', sys.argv[1]))", self.jobs["prepare"]], self.work)

    def stage(self, command: str) -> dict[str, tuple[float, float]]:
        """{part: (wall seconds, CPU seconds of the process)}."""
        module, entry, _, extra = STAGES[command]
        argv = [command, "--task", TASK, "--config", self.jobs[command]] + [a.format(w=self.work) for a in extra]
        out = _run(self.code, ["-c", DRIVER, repr(time.monotonic()), module, entry, *argv], self.work)
        marks = json.loads(out.strip().splitlines()[-1])
        times, last = {}, marks["start"]
        for part in PARTS:
            times[part], last = (marks[part][0] - last[0], marks[part][1] - last[1]), marks[part]
        return times

    def listing(self, args: list[str]) -> float:
        t0 = time.monotonic()
        _run(self.code, ["-m", "scd.cli", *args], self.work)
        return time.monotonic() - t0

    def sync(self) -> tuple[float, int] | None:
        """(seconds, records) of one `scd tracking sync` process on the records the repeats wrote."""
        if not self.deferred:
            return None
        n = sum(1 for _ in (self.results / "runs").glob("*/record.json"))
        t0 = time.monotonic()
        _run(self.code, ["-m", "scd.cli", "tracking", "sync", "--results", str(self.results)], self.work)
        return time.monotonic() - t0, n


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:7.2f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, help="another checkout of the project (e.g. a worktree of the "
                                                   "previous commit), timed side by side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stages", nargs="*", default=list(STAGES), choices=list(STAGES))
    add_save_argument(ap)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="scd-startup-"))
    sides = [Side("this", HERE, work)] + ([Side("reference", args.reference.resolve(), work)] if args.reference
                                          else [])
    stage_times = {(s.name, c): [] for s in sides for c in args.stages}
    listing_times = {(s.name, " ".join(a)): [] for s in sides for a in LISTINGS}
    load = os.getloadavg()[0]
    for _ in range(args.repeats):
        for command in args.stages:
            for side in sides:  # interleaved: this, reference, this, ...
                stage_times[(side.name, command)].append(side.stage(command))
        for listing in LISTINGS:
            for side in sides:
                listing_times[(side.name, " ".join(listing))].append(side.listing(listing))
    sync = {s.name: s.sync() for s in sides}
    load = max(load, os.getloadavg()[0])

    def med(side: str, command: str, part: str | None, clock: int) -> float:
        runs = [{k: v[clock] for k, v in t.items()} for t in stage_times[(side, command)]]
        if part is None:
            return statistics.median(sum(t.values()) - t["tracking"] for t in runs)
        if part == "total":
            return statistics.median(sum(t.values()) for t in runs)
        return statistics.median(t[part] for t in runs)

    names = [s.name for s in sides]
    cols = "".join(f"{n:>10s}" for n in names) + ("     ratio" if len(names) == 2 else "")
    head = f"{'seconds (median of ' + str(args.repeats) + ')':38s}" + cols + "  | CPU  " + cols
    print(f"job start-up, {TASK}, smoke profile; load average up to {load:.1f} on {os.cpu_count()} cores")
    print(head)
    print("-" * len(head))

    def cells(values: list[float | None]) -> str:
        ratio = f"{values[0] / values[1]:10.2f}" if len(values) == 2 and values[1] and values[0] is not None \
            else ""
        return "".join(f"{_fmt(v):>10s}" for v in values) + ratio

    def row(label: str, values: list[float | None], cpu: list[float | None] | None = None) -> None:
        print(f"{label:38s}" + cells(values) + (f"  |      {cells(cpu)}" if cpu else ""))

    for command in args.stages:
        for part in (*PARTS, None, "total"):
            label = {None: "to first work", "total": "job fixed cost"}.get(part, part)
            row(f"{command}: {label}", [med(n, command, part, 0) for n in names],
                [med(n, command, part, 1) for n in names])
    done = next((v for v in sync.values() if v), None)
    if done:
        row(f"tracking sync: process, {done[1]} records", [sync[n][0] if sync[n] else None for n in names])
        row("tracking sync: per record", [sync[n][0] / max(sync[n][1], 1) if sync[n] else None for n in names])
    for listing in LISTINGS:
        label = " ".join(listing)
        row(f"scd {label}", [statistics.median(listing_times[(n, label)]) for n in names])

    # CPU seconds of the job's process: what the machine spends, and steadier than wall time on a shared machine
    totals = {command: med("this", command, "total", 1) for command in args.stages}
    slowest = max(totals, key=totals.get)
    figures = {"job fixed cost": figure(round(totals[slowest], 2), "s", "fixed cost of a workflow job, CPU seconds "
                                        f"(process start to first model work, plus tracking; slowest: {slowest})",
                                        "<= 2")}
    for command, total in totals.items():
        figures[f"{command} fixed cost"] = figure(round(total, 2), "s", f"`scd {command}` fixed cost, CPU seconds")
        if args.reference:
            ref = med("reference", command, "total", 1)
            figures[f"{command} vs reference"] = figure(round(total / ref, 2), "x", f"`scd {command}` fixed cost "
                                                        "/ the reference checkout's")
    listed = {" ".join(listing): statistics.median(listing_times[("this", " ".join(listing))])
              for listing in LISTINGS}
    worst = max(listed, key=listed.get)
    figures["listings"] = figure(round(listed[worst], 2), "s", f"slowest listing command (`scd {worst}`)", "<= 2")
    for label, seconds in listed.items():
        figures[f"scd {label}"] = figure(round(seconds, 2), "s", f"`scd {label}` wall time")
    save(args.save, "startup", "scd.benchmarks.startup", argv, figures,
         notes=f"Load average up to {load:.1f} on {os.cpu_count()} cores while measuring.")


if __name__ == "__main__":
    main()
