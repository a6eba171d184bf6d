"""Wall time and disk footprint of a finished workflow run, read from its results directory.

    snakemake --cores 2 && python -m scd.benchmarks.workflow --results results --save docs/performance

The wall time is that of the newest finished workflow invocation recorded in the results directory's
`mlflow.db` (the parent run the Snakefile opens at start and closes at the end), so run the profile from a clean
results directory for the time a first run takes. The disk footprint is the bytes of every file under the results
directory, and, of them, the MLflow store (`mlflow.db`, `mlartifacts/`) and the logs. Targets: the default
profile within 20 minutes on a 2-core machine, the `smollm2` profile within a third of the 109 minutes per seed it
once took; `--target-minutes` sets another.

Where the time went: the seconds each job's run records span (training, evaluation) and the teacher-output passes
(their manifests), summed per stage: the run's own work, without job start-up, scheduling and idle cores. That work
spread over the machine's cores is a floor no scheduling or start-up saving can go below.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from report.results_page import workflow_runs
from scd.benchmarks.record import add_save_argument, figure, save
from scd.layout import Layout

TARGET_MINUTES = {"default": 20}
TARGET_MINUTES_PER_SEED = {"smollm2": round(109 / 3, 1)}


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def work_by_stage(results: Path) -> dict[str, dict]:
    """Per stage: how many runs, and the seconds their run records span; the teacher-output passes as one more
    stage (their manifests' seconds). The seeds the records name go under `seeds`."""
    layout, out, seeds = Layout(results), {}, set()
    for path in sorted(layout.run_records().glob("*/record.json")):
        try:
            record = json.loads(path.read_text())
            stage, seconds = record["tags"]["scd.stage"], (record["end_time"] - record["start_time"]) / 1000
        except (ValueError, KeyError, TypeError):
            continue  # unfinished or foreign: not part of a finished run's work
        seeds.add(record["tags"].get("scd.seed"))
        entry = out.setdefault(stage, {"runs": 0, "seconds": 0.0})
        entry["runs"] += 1
        entry["seconds"] += seconds
    for manifest in sorted(results.glob("*/seed*/teacher_outputs/manifest.json")):
        entry = out.setdefault("teacher_outputs", {"runs": 0, "seconds": 0.0})
        entry["runs"] += 1
        entry["seconds"] += json.loads(manifest.read_text()).get("seconds", 0.0)
    return {"stages": out, "seeds": len(seeds - {None}) or 1}


def measure(results: Path) -> dict:
    runs = [r for r in workflow_runs(results) if r["status"] == "FINISHED" and r["end_ms"] is not None]
    if not runs:
        raise SystemExit(f"no finished workflow invocation recorded in {Layout(results).mlflow_db()}: run the "
                         "workflow to the end into this results directory first")
    last = runs[-1]
    board = Layout(results).leaderboard()
    profile = json.loads(board.read_text()).get("profile", "?") if board.is_file() else "?"
    layout = Layout(results)
    return {"profile": profile, "wall_seconds": (last["end_ms"] - last["start_ms"]) / 1000,
            "bytes": _bytes(results), "mlflow_bytes": _bytes(layout.mlflow_db()) + _bytes(layout.mlflow_artifacts()),
            "log_bytes": _bytes(results / "logs")} | work_by_stage(results)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--target-minutes", type=float, help="the wall-time target (default: 20 for the default profile)")
    add_save_argument(ap)
    args = ap.parse_args(argv)
    m = measure(args.results)
    minutes, profile = m["wall_seconds"] / 60, m["profile"]
    target = args.target_minutes or TARGET_MINUTES.get(profile)
    cores = os.cpu_count() or 1
    work = sum(s["seconds"] for s in m["stages"].values()) / 60
    print(f"profile {profile}: {minutes:.1f} min wall ({m['seeds']} seed(s)); {m['bytes'] / 1e6:.0f} MB under "
          f"{args.results} (MLflow {m['mlflow_bytes'] / 1e6:.0f} MB, logs {m['log_bytes'] / 1e6:.1f} MB)")
    rows = ["| stage | runs | core-min | share |", "|---|---:|---:|---:|"] + [
        f"| {stage} | {s['runs']} | {s['seconds'] / 60:.1f} | {s['seconds'] / 60 / work:.0%} |"
        for stage, s in sorted(m["stages"].items(), key=lambda kv: -kv[1]["seconds"])] if work else []
    notes = (f"Where the time went (the jobs' run records and teacher-output passes, start to end, summed; job "
             f"start-up, scheduling and idle cores are the rest of {minutes:.1f} min x {cores} cores):\n\n"
             + "\n".join(rows)) if rows else ""
    print(notes)
    figures = {
        "wall_minutes": figure(round(minutes, 1), "min", f"{profile} profile, wall time of a first run",
                               f"<= {target:g}" if target else None),
        "disk_mb": figure(round(m["bytes"] / 1e6), "MB", f"{profile} profile, disk under the results directory",
                          headline=True),
        "mlflow_mb": figure(round(m["mlflow_bytes"] / 1e6), "MB", "of which the MLflow store"),
        "work_core_minutes": figure(round(work, 1), "core-min", "the jobs' own work (run records, teacher-output "
                                    "passes), without start-up, scheduling and idle cores"),
        "work_floor_minutes": figure(round(work / cores, 1), "min", f"that work spread over the {cores} cores: the "
                                     "wall time no scheduling or start-up saving goes below"),
    }
    if profile in TARGET_MINUTES_PER_SEED:
        figures["wall_minutes_per_seed"] = figure(round(minutes / m["seeds"], 1), "min",
                                                  f"{profile} profile, wall time per seed",
                                                  f"<= {TARGET_MINUTES_PER_SEED[profile]:g}")
    save(args.save, f"workflow-{profile}", "scd.benchmarks.workflow", argv, figures, notes)


if __name__ == "__main__":
    main()
