"""Wall time and disk footprint of a finished workflow run, read from its results directory.

    snakemake --cores 2 && python -m scd.benchmarks.workflow --results results --save docs/performance

The wall time is that of the newest finished workflow invocation recorded in the results directory's
`mlflow.db` (the parent run the Snakefile opens at start and closes at the end), so run the profile from a clean
results directory for the time a first run takes. The disk footprint is the bytes of every file under the results
directory, and, of them, the MLflow store (`mlflow.db`, `mlartifacts/`) and the logs. Targets: the default
profile within 20 minutes on a 2-core machine; `--target-minutes` sets another.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from report.results_page import workflow_runs
from scd.benchmarks.record import add_save_argument, figure, save
from scd.layout import Layout

TARGET_MINUTES = {"default": 20}


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


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
            "log_bytes": _bytes(results / "logs")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--target-minutes", type=float, help="the wall-time target (default: 20 for the default profile)")
    add_save_argument(ap)
    args = ap.parse_args(argv)
    m = measure(args.results)
    minutes = m["wall_seconds"] / 60
    target = args.target_minutes or TARGET_MINUTES.get(m["profile"])
    print(f"profile {m['profile']}: {minutes:.1f} min wall; {m['bytes'] / 1e6:.0f} MB under {args.results} "
          f"(MLflow {m['mlflow_bytes'] / 1e6:.0f} MB, logs {m['log_bytes'] / 1e6:.1f} MB)")
    save(args.save, f"workflow-{m['profile']}", "scd.benchmarks.workflow", argv, {
        "wall_minutes": figure(round(minutes, 1), "min", f"{m['profile']} profile, wall time of a first run",
                               f"<= {target:g}" if target else None),
        "disk_mb": figure(round(m["bytes"] / 1e6), "MB", f"{m['profile']} profile, disk under the results directory",
                          headline=True),
        "mlflow_mb": figure(round(m["mlflow_bytes"] / 1e6), "MB", "of which the MLflow store"),
    })


if __name__ == "__main__":
    main()
