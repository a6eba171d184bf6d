"""Evaluation time of this code against a checkout of the previous code, on a choice task and a generation task.

    python -m scd.benchmarks.evaluation --reference /path/to/previous/checkout [--profile smollm2] [--items 64]

Both codes score the same zero-shot model (the profile's `--role` model: with `--profile smollm2` the SmolLM2
teacher, with the default profile a seeded random Llama) on the first `--items` test rows of each task, prepared
once by this code. Each timed run is a fresh process (`python -c`, with PYTHONPATH set to the checkout it runs),
which imports, builds the model, predicts two rows untimed and then times `scd.evaluate.predict` over all rows,
gold NLL included, as `scd evaluate` does. Runs alternate (reference, this code, reference, ...), `--repeats`
each. Printed: one line per run, then per task its mode, the median seconds of each code and `speedup` (the
reference's median / ours; above 1 = faster now), the number of predictions that differ (the script fails unless
it is 0) and the largest gold-NLL difference.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from scd.benchmarks.record import add_save_argument, figure, save
from scd.config import load_config, stage_config
from scd.stages.prepare import prepare

HERE = Path(__file__).resolve().parents[2]

WORKER = """
import json, sys, time
import torch
from scd.config import load_config, stage_config
from scd.evaluate import predict
from scd.models import build_model
from scd.prepared import Prepared
from scd.runtime import autocast
a = json.loads(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(a["threads"])
cfg = load_config(a["profile"], a["overrides"])
prep = Prepared.open(a["data"])
job = stage_config(cfg, a["task"], "zero_shot", a["role"])
model = build_model(job.model, prep.tokenizer, prep.task.positions, 0).eval()
rows = prep.rows("test")[: a["items"]]
mode = prep.task.evaluation["mode"]
def run(rs):
    with autocast(a["precision"], "cpu"):
        return predict(model, prep.tokenizer, prep.task, rs, prep.task.max_length, a["batch_size"], "cpu", mode=mode)
run(rows[:2])
start = time.perf_counter()
records = run(rows)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "mode": mode, "pred": [r["pred"] for r in records],
                  "gold_nll": [r["gold_nll"] for r in records]}))
"""


def run_worker(code: Path, args: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code))
    done = subprocess.run([sys.executable, "-c", WORKER, json.dumps(args)], env=env, capture_output=True, text=True,
                          cwd=code)
    if done.returncode:
        raise SystemExit(f"the evaluation run with the code at {code} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, required=True, help="a checkout of the previous code")
    ap.add_argument("--profile", default="default", help="configuration profile (default: default)")
    ap.add_argument("--role", default="student", choices=("teacher", "student"), help="whose zero-shot model")
    ap.add_argument("--tasks", nargs="*", default=["sib200_eng_latn", "ncbi_disease"],
                    help="tasks to time (default: a 7-option choice task and a generation task)")
    ap.add_argument("--items", type=int, default=64, help="test rows per task")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None, help="evaluation batch size (default: the config's)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=1)
    add_save_argument(ap)
    args = ap.parse_args(argv)
    if not (args.reference / "scd" / "evaluate.py").is_file():
        raise SystemExit(f"--reference {args.reference}: not a checkout of this project (no scd/evaluate.py there); "
                         f"make one with `git worktree add <dir> <commit>`")

    work = Path(tempfile.mkdtemp(prefix="scd-eval-bench-"))
    overrides = {"results_dir": str(work / "results"), "tasks": args.tasks}
    cfg = load_config(args.profile, overrides)
    rows: list[dict] = []
    for task in args.tasks:
        prepare(stage_config(cfg, task, "prepare"), work / task)
        batch = args.batch_size or stage_config(cfg, task, "evaluate").evaluation.batch_size
        common = {"profile": args.profile, "overrides": overrides, "data": str(work / task), "task": task,
                  "role": args.role, "items": args.items, "batch_size": batch, "precision": args.precision,
                  "threads": args.threads}
        results: dict[str, list[dict]] = {"reference": [], "this": []}
        for r in range(args.repeats):
            for name, code in (("reference", args.reference.resolve()), ("this", HERE)):
                results[name].append(run_worker(code, common))
                print(f"  {task} repeat {r} {name:9s} {results[name][-1]['seconds']:7.2f} s", flush=True)
        ref, new = results["reference"][0], results["this"][0]
        differ = sum(a != b for a, b in zip(ref["pred"], new["pred"]))
        nll = max((abs(a - b) for a, b in zip(ref["gold_nll"], new["gold_nll"])), default=0.0)
        t_ref = statistics.median(x["seconds"] for x in results["reference"])
        t_new = statistics.median(x["seconds"] for x in results["this"])
        rows.append({"task": task, "mode": new["mode"], "items": len(new["pred"]), "batch_size": batch,
                     "reference_s": round(t_ref, 3), "this_s": round(t_new, 3), "speedup": round(t_ref / t_new, 2),
                     "predictions_differ": differ, "max_gold_nll_diff": nll})
    print("\n| task | mode | items | reference s | this s | speedup | predictions differ | max gold-NLL diff |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['task']} | {r['mode']} | {r['items']} | {r['reference_s']:.2f} | {r['this_s']:.2f} | "
              f"{r['speedup']:.2f}x | {r['predictions_differ']} | {r['max_gold_nll_diff']:.1e} |")
    print(json.dumps(rows))
    bad = [r["task"] for r in rows if r["predictions_differ"]]
    if bad:
        raise SystemExit(f"predictions differ from the reference's on {bad}")
    save(args.save, f"evaluation-{args.profile}", "scd.benchmarks.evaluation", argv, {
        f"{r['task']} speedup": figure(r["speedup"], "x", f"{args.profile} {args.role}, {r['task']} ({r['mode']}, "
                                       f"{r['items']} items): previous evaluation s / this code's", headline=True)
        for r in rows}, notes="Predictions equal to the previous code's on every item (the benchmark stops "
                              "otherwise); gold NLL within " + f"{max(r['max_gold_nll_diff'] for r in rows):.1e}.")


if __name__ == "__main__":
    main()
