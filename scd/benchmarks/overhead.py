"""Wall-time overhead of SCD+AW relative to TD on the same student steps (target: at most 1.15x).

    python -m scd.benchmarks.overhead --run-dir results/synthetic_subdomains/seed0 --repeats 3

Both methods train the same number of stages, epochs and rows from the same student-SFT model, so the student does
the same optimizer steps; what SCD+AW adds is the schedule (the student's distribution on the probe set at every
stage, KLs against every checkpoint) and AW (the frozen student-SFT model's losses once, the checkpoint's losses
when it changes), and a transfer set relabelled by each checkpoint it visits. Two settings are timed:

- shared: teacher outputs come from `scd teacher-outputs` (the workflow's path; its one-off cost is printed apart,
  since every method of a task and seed shares it);
- in-job: each run computes the teacher outputs it needs itself (TD: one checkpoint, SCD+AW: those it visits).

Runs alternate between methods and the median of `--repeats` is reported. `--run-dir` takes a finished workflow
seed directory (data is its task's `data/` beside it); without it a small synthetic setup is trained first.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from scd.benchmarks.setup import TASK, benchmark_config, seed_dir, teacher_cache
from scd.config import stage_config
from scd.stages.distill import distill


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, help="a workflow seed directory (teacher/, student/, teacher_outputs/)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="distillation epochs (default: the config's)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="scd-overhead-"))
    cfg = benchmark_config(work, args.run_dir is not None, args.epochs)
    seed = seed_dir(work, cfg, args.run_dir)
    data = seed.parent / "data"
    cache, cache_seconds = teacher_cache(work, cfg, seed)

    times: dict[tuple[str, str], list[float]] = {}
    steps: dict[str, int] = {}
    for r in range(args.repeats):
        for setting, cache_dir in (("shared", cache), ("in-job", None)):
            for method in ("td", "scd+aw"):
                start = time.perf_counter()
                s = distill(stage_config(cfg, TASK, "distill", method), 0, data, seed / "teacher",
                            seed / "student", work / f"{method}-{setting}-{r}", cache_dir)
                times.setdefault((setting, method), []).append(time.perf_counter() - start)
                steps[method] = sum(st["steps"] for st in s["stages"])
                print(f"  repeat {r} {setting:6s} {method:7s} {times[(setting, method)][-1]:7.1f} s "
                      f"(schedule {s['schedule']}, {steps[method]} steps)", flush=True)
    assert steps["td"] == steps["scd+aw"], steps  # the comparison is only fair on the same student steps

    print(f"\nteacher outputs, all checkpoints (shared by every method of a task and seed): {cache_seconds:.1f} s")
    print(f"{'setting':8s} {'TD s':>8s} {'SCD+AW s':>9s} {'ratio':>6s}   (median of {args.repeats}, "
          f"{steps['td']} student steps each)")
    for setting in ("shared", "in-job"):
        td, ours = statistics.median(times[(setting, "td")]), statistics.median(times[(setting, "scd+aw")])
        print(f"{setting:8s} {td:8.1f} {ours:9.1f} {ours / td:6.2f}x")


if __name__ == "__main__":
    main()
