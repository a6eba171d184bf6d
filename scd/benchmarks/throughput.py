"""Training throughput of every configured method relative to TD, on the same student steps.

    python -m scd.benchmarks.throughput --run-dir results/synthetic_subdomains/seed0 --repeats 1

Every method distils the same student-SFT model over the same stages, epochs and rows (the check below refuses to
compare runs with different step counts), from the teacher outputs shared by the workflow; what differs is the loss
(divergence, trained projectors, TAID's state), the responses (on-policy sampling with a live teacher, teacher
greedy targets) and the schedule. Reported per method (median of `--repeats`): student optimizer steps, step
seconds (the training loop without its per-epoch validation, whose generation time depends on how soon each model
says EOS), steps per second and step time relative to TD (1.00x = TD's speed), then the whole job's wall seconds
(stage starts, validation, saving: what a workflow job costs besides start-up) relative to TD.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from scd.benchmarks.record import add_save_argument, figure, save
from scd.benchmarks.setup import TASK, benchmark_config, seed_dir, teacher_cache
from scd.config import enabled_methods, stage_config
from scd.stages.distill import distill

TARGETS = {"gkd": "<= 1.5", "scd+aw": "<= 1.15"}  # on-policy GKD with its sampling; SCD+AW's schedule and weights


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, help="a workflow seed directory (teacher/, student/, data beside it)")
    ap.add_argument("--methods", nargs="*", help="methods of the default profile to time (default: all enabled)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None, help="distillation epochs (default: the config's)")
    add_save_argument(ap)
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="scd-throughput-"))
    cfg = benchmark_config(work, args.run_dir is not None, args.epochs)
    methods = args.methods or enabled_methods(cfg)
    methods = ["td"] + [m for m in methods if m != "td"]
    seed = seed_dir(work, cfg, args.run_dir)
    cache, cache_seconds = teacher_cache(work, cfg, seed)

    # One untimed run first: the first distillation in a process pays one-off costs (lazy imports, allocator
    # growth, the MLflow store's first writes) that would otherwise be charged to TD, the reference.
    distill(stage_config(cfg, TASK, "distill", "td"), 0, seed.parent / "data", seed / "teacher",
            seed / "student", work / "warm-up", cache)
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    wall: dict[str, list[float]] = {m: [] for m in methods}
    steps: dict[str, int] = {}
    for r in range(args.repeats):
        for method in methods:
            s = distill(stage_config(cfg, TASK, "distill", method), 0, seed.parent / "data", seed / "teacher",
                        seed / "student", work / f"{method}-{r}", cache)
            seconds[method].append(sum(st["train_seconds"] - st["val_seconds"] for st in s["stages"]))
            wall[method].append(s["wall_seconds"])
            steps[method] = sum(st["steps"] for st in s["stages"])
            print(f"  repeat {r} {method:10s} steps {seconds[method][-1]:7.1f} s, job {wall[method][-1]:7.1f} s, "
                  f"{steps[method]} steps", flush=True)
    unequal = {m: n for m, n in steps.items() if n != steps["td"]}
    if unequal:
        raise SystemExit(f"methods with other step counts than TD ({steps['td']}): {unequal}; not comparable")

    td, td_wall = statistics.median(seconds["td"]), statistics.median(wall["td"])
    print(f"\nshared teacher outputs (all checkpoints, once per task and seed): {cache_seconds:.1f} s")
    print("| method | steps | step s | steps/s | step time vs TD | job s | job vs TD |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for method in methods:
        t, w = statistics.median(seconds[method]), statistics.median(wall[method])
        print(f"| {method} | {steps[method]} | {t:.1f} | {steps[method] / t:.1f} | {t / td:.2f}x | {w:.1f} | "
              f"{w / td_wall:.2f}x |")
    save(args.save, "throughput", "scd.benchmarks.throughput", argv, {
        f"{m} step vs TD": figure(round(statistics.median(seconds[m]) / td, 2), "x",
                                  f"{m}: step time / TD's on the same student steps", TARGETS.get(m))
        for m in methods if m != "td"})


if __name__ == "__main__":
    main()
