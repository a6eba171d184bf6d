"""Stage 6: evaluation summaries -> one leaderboard: mean, std and n over seeds per (model, task), per subdomain,
and the average over tasks."""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from scd.data import read_jsonl
from scd.decompose import decompose
from tasks import task_groups

ROW_ORDER = ("teacher_zero_shot", "student_zero_shot", "teacher_sft", "student_sft")


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def aggregate(eval_files: list[Path], methods: list[str], profile: str = "default", results_dir: str = "results",
              ablations: dict | None = None) -> dict:
    runs = [json.loads(Path(f).read_text()) for f in eval_files]
    for f, r in zip(eval_files, runs):
        r["_dir"] = Path(f).parent.parent  # the seed's directory: distill/<method>/, teacher_outputs/
    tasks = sorted({r["task"] for r in runs})
    rows = list(ROW_ORDER) + [m for m in methods if m not in ROW_ORDER]
    cells: dict = defaultdict(dict)
    sub: dict = defaultdict(lambda: defaultdict(dict))
    metric_of, directions = {}, {}
    for task in tasks:
        for row in rows:
            mine = sorted((r for r in runs if r["task"] == task and r["model"] == row), key=lambda r: r["seed"])
            if not mine:
                continue
            metric_of[task] = mine[0]["metric"]
            directions[task] = mine[0].get("directions") or {mine[0]["metric"]: "max"}
            cells[row][task] = mean_std([r["score"] for r in mine]) | {
                "seeds": [r["seed"] for r in mine], "run_ids": [r["run_id"] for r in mine],
                "train_run_ids": [r.get("train_run_id") for r in mine],
                "scores": {k: mean_std([r.get("scores", {r["metric"]: r["score"]})[k] for r in mine])
                           for k in directions[task]}}
            for name in mine[0]["subdomains"]:
                sub[task][row][name] = mean_std([r["subdomains"][name]["score"] for r in mine])
    # Average over tasks (and over each task group's tasks): per seed, the mean of that seed's headline scores;
    # then mean/std over seeds. A seed missing one of the tasks is left out.
    groups = task_groups_of(tasks)
    group_cells: dict = defaultdict(dict)
    for row in rows:
        for name, members in [("average", tasks)] + list(groups.items()):
            per_seed = defaultdict(list)
            for r in runs:
                if r["model"] == row and r["task"] in members:
                    per_seed[r["seed"]].append(r["score"])
            complete = [statistics.fmean(v) for s, v in sorted(per_seed.items()) if len(v) == len(members)]
            if complete:
                (cells if name == "average" else group_cells)[row][name] = mean_std(complete)
    best = {}
    for col in tasks + ["average"]:
        scored = [(cells[row][col]["mean"], row) for row in rows if col in cells[row]]
        if scored:
            top = max(s for s, _ in scored)
            best[col] = [row for s, row in scored if s == top]
    return {"profile": profile, "results_dir": results_dir, "decomposition": decomposition(eval_files, runs, rows),
            "tasks": tasks, "rows": [r for r in rows if cells.get(r)], "metric": metric_of, "metrics": directions,
            "groups": groups, "group_cells": group_cells,
            "cells": cells, "subdomains": sub, "best": best, "schedules": schedules(runs, rows),
            "ablations": ablation_results(runs, ablations or {})}


def task_groups_of(tasks: list[str]) -> dict[str, list[str]]:
    """The registry's groups that hold at least two of these tasks, restricted to them (tasks no longer in the
    registry are left out)."""
    out = {}
    for group, members in sorted(task_groups().items()):
        mine = [t for t in members if t in tasks]
        if len(mine) >= 2:
            out[group] = mine
    return out


def _distill_summary(run: dict) -> dict | None:
    path = run["_dir"] / "distill" / run["model"] / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def schedules(runs: list[dict], rows: list[str]) -> dict:
    """Per task and method: each seed's selected checkpoints, and the AW weight histograms summed over seeds with
    the mean weight per subdomain and stage (mean over seeds)."""
    out: dict = defaultdict(dict)
    for r in sorted(runs, key=lambda r: r["seed"]):
        d = _distill_summary(r) if r["model"] in rows else None
        if not d:
            continue
        entry = out[r["task"]].setdefault(r["model"], {"runs": [], "aw": []})
        entry["runs"].append({"seed": r["seed"], "schedule": d["schedule"], "checkpoints": d["checkpoints"]})
        for stage, hist in enumerate(d.get("aw_histograms") or []):
            if stage == len(entry["aw"]):
                entry["aw"].append({"stage": stage, "checkpoints": [], "hist": {}, "mean": defaultdict(list)})
            agg = entry["aw"][stage]
            agg["checkpoints"].append(hist["checkpoint"])
            for k, v in hist.items():
                if k.startswith("mean/"):
                    agg["mean"][k[5:]].append(v)
                elif isinstance(v, list):
                    agg["hist"][k] = [a + b for a, b in zip(agg["hist"].get(k, [0] * len(v)), v)]
            agg["bins"] = hist["bins"]
    for methods in out.values():
        for entry in methods.values():
            for agg in entry["aw"]:
                agg["mean"] = {k: mean_std(v) for k, v in agg["mean"].items()}
    return out


def ablation_results(runs: list[dict], plan: dict) -> dict:
    """Per axis, task and method: score (mean/std over seeds) per ablated value, with its costs: distillation
    wall time (mean over seeds) and, for granularity, the disk taken by the checkpoints the trajectory keeps."""
    out: dict = {}
    for axis, methods in (plan.get("axes") or {}).items():
        for task in plan.get("tasks", []):
            for base, values in methods.items():
                points = []
                for value, name in sorted(values.items(), key=lambda kv: float(kv[0])):
                    mine = [r for r in runs if r["task"] == task and r["model"] == name]
                    if not mine:
                        continue
                    summaries = [d for d in map(_distill_summary, mine) if d]
                    point = {"value": float(value), "method": name, "score": mean_std([r["score"] for r in mine])}
                    if summaries:
                        point["seconds"] = statistics.fmean(d.get("wall_seconds", d["train_seconds"])
                                                            for d in summaries)
                        point["checkpoint_bytes"] = _checkpoint_bytes(mine[0]["_dir"], summaries[0]["checkpoints"])
                    points.append(point)
                if points:
                    out.setdefault(axis, {}).setdefault(task, {})[base] = points
    return out


def _checkpoint_bytes(seed_dir: Path, names: list[str]) -> int | None:
    manifest = seed_dir / "teacher_outputs" / "manifest.json"
    if not manifest.exists():
        return None
    sizes = json.loads(manifest.read_text())["checkpoints"]
    return sum(sizes[n]["checkpoint_bytes"] for n in names if n in sizes)


def decomposition(eval_files: list[Path], runs: list[dict], rows: list[str]) -> dict:
    """TFS/SFS decomposition (scd/decompose.py) per task and model, mean/std over seeds; per-sample records are
    read from the `.samples.jsonl` beside each evaluation summary."""
    samples = {(r["task"], r["seed"], r["model"]): Path(f).with_suffix(".samples.jsonl") for f, r in zip(eval_files, runs)}
    per: dict = defaultdict(lambda: defaultdict(list))
    for (task, seed, model), path in sorted(samples.items()):
        t, s = samples.get((task, seed, "teacher_sft")), samples.get((task, seed, "student_sft"))
        if t is None or s is None or not path.exists():
            continue
        per[task][model].append(decompose(read_jsonl(t), read_jsonl(s), read_jsonl(path)))
    out: dict = {}
    for task, models in per.items():
        out[task] = {m: {k: mean_std([d[k] for d in ds]) for k in ds[0] if k != "n"} | {"n_samples": ds[0]["n"]}
                     for m, ds in models.items() if m in rows}
    return out
