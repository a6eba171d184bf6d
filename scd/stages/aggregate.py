"""Stage 6: evaluation summaries -> one leaderboard: mean, std and n over seeds per (model, task), per subdomain,
and the average over tasks.

It reads the files it is given and nothing else (the workflow declares them as the rule's inputs): evaluation
summaries, and, where given, the per-sample records (the TFS/SFS decomposition), the distillation summaries (teacher
schedules, adaptive weights, ablation wall times) and the teacher-output manifests (ablation checkpoint bytes). The
layout (scd/layout.py) says which run a per-sample file, summary or manifest belongs to."""
from __future__ import annotations

import json
import os
import platform
import socket
import statistics
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from scd import stats
from scd.checkout import git_state
from scd.config import aggregate_inputs, aggregate_plans, expected_plan, leaderboard_methods
from scd.data import read_jsonl
from scd.decompose import decompose
from scd.layout import Layout
from tasks import get_task, metrics, task_groups
from tasks.metrics import ENTITY_COUNT_METRICS

SAMPLES_REMEDY = "delete it and rerun the workflow, which re-evaluates that model"
ROW_ORDER = ("teacher_zero_shot", "student_zero_shot", "teacher_sft", "student_sft")


class MissingResults(FileNotFoundError):
    """Files the leaderboard reads that are not in the results directory (a part not run, or not committed)."""


def collect_inputs(cfg: dict, part_command=None) -> dict[str, list[Path]]:
    """The files `scd aggregate` reads for this configuration (scd.config.aggregate_inputs, as the workflow's rule
    aggregate), each checked to exist. Missing ones are one line: how many, the first few, and the command of each
    part that writes them (`part_command(task, seeds)`: the workflow over that task, over `seeds` unless None; by
    default `snakemake --config ...`). A task missing from its first seed on needs its whole part; a task run seed by
    seed (parts over the seeds up to one more each time, in one checkout) needs the part up to its first missing
    seed, then the next ones."""
    inputs = aggregate_inputs(cfg)
    every = [f for files in inputs.values() for f in files]
    missing = [f for f in every if not Path(f).is_file()]
    if missing:
        root, seeds = Layout(cfg["results_dir"]).root, list(cfg["seeds"])
        gaps: dict[str, set[int]] = {}  # task -> indices of its seeds with a missing file (a task-wide file: all)
        for f in missing:
            task, where = Path(f).relative_to(root).parts[:2]
            seed = int(where[4:]) if where.startswith("seed") and where[4:].isdigit() else None
            gaps.setdefault(task, set()).update([seeds.index(seed)] if seed in seeds else range(len(seeds)))
        command = part_command or (lambda task, upto: " ".join(
            ["snakemake --config", f"tasks='[{task}]'"] + ([f"seeds='[{','.join(map(str, upto))}]'"] if upto else [])))
        parts = [command(t, None) if 0 in g else command(t, seeds[:min(g) + 1])
                 + (", then one seed more at a time" if max(g) > min(g) else "") for t, g in gaps.items()]
        shown = ", ".join(map(str, missing[:3])) + (", ..." if len(missing) > 3 else "")
        raise MissingResults(f"{len(missing)} of the {len(every)} files the leaderboard reads are missing ({shown}): "
                             f"run the part(s) that write them ({'; '.join(parts)}) or check out the commit that "
                             "holds them, then collect again")
    return inputs


def collect(cfg: dict, part_command=None) -> dict:
    """The leaderboard of a results directory filled by separate runs (parts, e.g. one task each), from the files
    the workflow's rule aggregate reads for this configuration and with the same plan: nothing is run or trained;
    any missing file is an error naming the part that writes it (see `collect_inputs`). The plans go through JSON
    as the rule's command line passes them (an ablation value 2 becomes the key "2"), so the leaderboard is the
    workflow's."""
    inputs = collect_inputs(cfg, part_command)
    return aggregate(inputs["evals"], leaderboard_methods(cfg), cfg["profile"], cfg["results_dir"],
                     _as_passed(aggregate_plans(cfg)), samples=inputs["samples"],
                     distill_summaries=inputs["distill_summaries"],
                     teacher_outputs_manifests=inputs["teacher_outputs_manifests"],
                     expect=_as_passed(expected_plan(cfg)), prepared_manifests=inputs["prepared_manifests"])


def _as_passed(plan: dict) -> dict:
    """A plan as `scd aggregate` receives it from the workflow: through JSON (number keys become strings)."""
    return json.loads(json.dumps(plan, sort_keys=True))


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def aggregate(eval_files: list[Path], methods: list[str], profile: str = "default", results_dir: str = "results",
              ablations: dict | None = None, samples: list[Path] = (), distill_summaries: list[Path] = (),
              teacher_outputs_manifests: list[Path] = (), expect: dict | None = None,
              prepared_manifests: list[Path] = (), resamples: int = stats.DEFAULT_RESAMPLES,
              bootstrap_seed: int = 0) -> dict:
    """The leaderboard of these evaluation summaries. `results_dir` is the layout's root, where the other files
    (`samples`, `distill_summaries`, `teacher_outputs_manifests`) are looked up per run; a run whose file is not
    given goes without (no decomposition, schedule or ablation cost); a given file that is missing is an error.
    `expect` is the workflow's plan, {task: {"seeds": [...], "models": [...]}}: a planned run without an evaluation
    summary among those given is an error (the leaderboard would silently lack it). `prepared_manifests` (one per
    task) say which tasks ran on data that differs from the pinned files, and the data checks' counts.
    `resamples` and `bootstrap_seed`: the hierarchical bootstrap's (see `statistics`)."""
    given = [*eval_files, *samples, *distill_summaries, *teacher_outputs_manifests, *prepared_manifests]
    missing = [f for f in given if not Path(f).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"input {missing[0]} not found{more}: run the job that writes it first")
    runs = [read_json(f, "evaluation summary") for f in eval_files]
    layout = Layout(results_dir)
    keys = [_key(r) for r in runs]
    _check_runs(eval_files, keys, expect)
    _check_metrics(eval_files, runs)
    sample_files = _lookup(samples, keys, layout.eval_samples, "per-sample file")
    distilled = {k: read_json(p, "distillation summary") for k, p in
                 _lookup(distill_summaries, keys, layout.distill_summary, "distillation summary").items()}
    prepared = {m["task"]: m for m in (read_json(p, "prepared-data manifest") for p in prepared_manifests)}
    manifests = {k: read_json(p, "teacher-output manifest") for k, p in _lookup(
        teacher_outputs_manifests, sorted({k[:2] for k in keys}), layout.teacher_outputs_manifest,
        "teacher-output manifest").items()}
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
    records = {k: read_jsonl(p, remedy=SAMPLES_REMEDY) for k, p in sorted(sample_files.items())}
    compared = [r for r in rows if r not in ROW_ORDER and cells.get(r)]
    found = statistics_of(records, sample_files, runs, eval_files, tasks, compared, metric_of, resamples,
                          bootstrap_seed)
    ranking = {t: {r: cells[r][t]["mean"] for r in compared if t in cells[r]} for t in tasks}
    higher = {t: directions[t].get(metric_of[t], "max") == "max" for t in tasks}
    found["ranks"] = stats.average_ranks(ranking, higher) if compared else {}
    found["friedman"] = stats.friedman(ranking, higher)
    found["critical_difference"] = stats.critical_difference(found["ranks"], len(ranking))
    return found | {
            "profile": profile, "results_dir": results_dir, "decomposition": decomposition(records, rows, sample_files),
            "stamp": stamp(), "majority": majority_rates(records),
            "tasks": tasks, "rows": [r for r in rows if cells.get(r)], "metric": metric_of, "metrics": directions,
            "groups": groups, "group_cells": group_cells,
            "cells": cells, "subdomains": sub, "best": best, "schedules": schedules(runs, rows, distilled),
            "ablations": ablation_results(runs, ablations or {}, distilled, manifests),
            "oracle": oracle_results(runs, (ablations or {}).get("oracles") or {}, rows),
            "compute": compute_costs(runs, [r for r in rows if cells.get(r)], distilled, manifests),
            "data_modified": {t: m["data_modified"] for t, m in sorted(prepared.items()) if m.get("data_modified")},
            "data_checks": {t: m["data_checks"] for t, m in sorted(prepared.items()) if m.get("data_checks")}}


MEAN_METRICS = ("accuracy", "exact_match")  # headline metrics that are means of per-item correctness
# JMED-LLM's entity F1 is by definition the mean over items of each item's F1 (tasks/metrics.py): its resample is the
# mean of the drawn items' values. The others are corpus metrics, recomputed from per-item sufficient statistics.
ITEM_MEAN_METRICS = ("entity_f1_exact", "entity_f1_partial")
RESAMPLED_METRICS = (*MEAN_METRICS, *ITEM_MEAN_METRICS, "macro_f1", "cohen_kappa", *ENTITY_COUNT_METRICS)
REFERENCES = {"vs_td": "td", "vs_student_sft": "student_sft"}


def statistics_of(records: dict[tuple, list[dict]], sample_files: dict[tuple, Path], runs: list[dict],
                  eval_files: list[Path], tasks: list[str], compared: list[str], metric_of: dict[str, str],
                  resamples: int, seed: int) -> dict:
    """Per task and for the average over tasks (scd/stats.py does the arithmetic), from the per-sample
    records: `comparisons[col][row]` with `vs_td` and `vs_student_sft` ({diff, ci95, p, p_holm, se}; Holm across
    the rows compared, per column and reference), `gap_closed[col][row]` ({value, ci95, gap, gap_ci95,
    meaningful}) and `mde[col]`; `statistics` says how they were computed and, per column, why a field is left out
    (no per-sample records, no TD or student-SFT row, a metric not resampled). The headline metric is recomputed
    on each resample from per-item data (`_item_data`): a corpus metric (macro-F1, Cohen's kappa, entity-level F1)
    from the drawn items' sufficient statistics, never as a mean of per-item scores. The average resamples the same
    seeds for every task and the items within each task; it needs every task resampled, on the same seeds."""
    omitted: dict[str, list[str]] = defaultdict(list)
    meta = {"resamples": resamples, "seed": seed, "smallest_p": 2 / (resamples + 1),  # the bootstrap p's floor
            "interval": "95% percentile interval of a paired hierarchical bootstrap (seeds, then test items within "
                        "each seed; the same draws for every row)",
            "p_value": "two-sided bootstrap p of the paired difference; p_holm: Holm-adjusted across the rows "
                       "compared, per column and reference",
            "mde": f"{stats.MDE_FACTOR:.2f} x the median over the rows compared of the bootstrap SE of (row - td) "
                   "(of (row - student_sft) where there is no td row): 80% power, two-sided alpha 0.05",
            "seeds": {}, "items": {}, "omitted": omitted}  # with one seed an interval covers the test items only
    out: dict = {"comparisons": {}, "gap_closed": {}, "mde": {}, "statistics": meta}
    if not compared:
        omitted["all"].append("no distilled rows to compare")
        return out
    wanted = list(dict.fromkeys([*compared, *REFERENCES.values(), "teacher_sft"]))
    score_of = {_key(r): (r["score"], f) for r, f in zip(runs, eval_files)}
    resampled: dict = {}
    for task in tasks:
        seeds = sorted({r["seed"] for r in runs if r["task"] == task})
        here = [r for r in wanted if all((task, s, r) in score_of for s in seeds)]
        lacking = [(task, s, r) for r in here for s in seeds if (task, s, r) not in records]
        if lacking:
            more = f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""
            omitted[task].append(f"no per-sample records for {_name(lacking[0])}{more}")
            continue
        spec = metric_spec(task, metric_of[task])
        if spec["name"] not in RESAMPLED_METRICS:
            named = f" ({spec['name']})" if spec["name"] != metric_of[task] else ""
            omitted[task].append(f"its headline metric {metric_of[task]!r}{named} is not resampled (only "
                                 f"{', '.join(RESAMPLED_METRICS)})")
            continue
        data, metric, why = _item_data(task, seeds, here, records, sample_files, spec)
        if why:
            omitted[task].append(why)
            continue
        for r in here:
            for s, x in zip(seeds, data[r]):
                value = float(metric(x, np.arange(len(x))[None])[0])
                score, f = score_of[(task, s, r)]
                if abs(value - score) > 1e-9:
                    raise ValueError(f"{sample_files[(task, s, r)]} scores {metric_of[task]} {value:.6f}, but its "
                                     f"evaluation summary {f} {score:.6f}: one of them is stale or was edited; "
                                     "delete both and rerun the workflow, which re-evaluates that model")
        draws = stats.seed_draws(len(seeds), resamples, seed)
        point, values = stats.hierarchical_bootstrap(data, metric, draws, seed, task)
        resampled[task] = (seeds, point, values)
        meta["seeds"][task], meta["items"][task] = len(seeds), [len(x) for x in data[here[0]]][0]
        _column(out, omitted, task, point, values, compared)
    done = [resampled[t] for t in tasks if t in resampled]
    if len(done) < len(tasks) or not done:
        omitted["average"].append("needs every task's statistics (see the tasks' reasons)")
    elif len({tuple(seeds) for seeds, _, _ in done}) > 1:
        omitted["average"].append("the tasks ran on different seeds")
    else:
        common = [r for r in wanted if all(r in point for _, point, _ in done)]
        point = {r: float(np.mean([p[r] for _, p, _ in done])) for r in common}
        values = {r: np.mean([v[r] for _, _, v in done], axis=0) for r in common}
        _column(out, omitted, "average", point, values, compared)
        meta["seeds"]["average"] = len(done[0][0])
    meta["omitted"] = dict(omitted)
    return out


def metric_spec(task: str, key: str) -> dict:
    """The registry's declaration of the task's metric `key`: {name, params, labels} (labels: the metric's own
    `labels` param, else the task's). A task no longer in the registry, or a key it does not declare: the key taken
    as the metric's name, without params or labels (the metrics' defaults)."""
    try:
        declared = get_task(task)
    except KeyError:
        declared = None
    for m in declared.metric_specs if declared is not None else []:
        if m["key"] == key:
            return {"name": m["name"], "params": dict(m["params"]),
                    "labels": list(m["params"].get("labels") or declared.labels or [])}
    return {"name": key, "params": {}, "labels": []}


def _item_data(task: str, seeds: list[int], rows: list[str], records: dict, sample_files: dict, spec: dict):
    """Per row, one array per seed of what the metric needs per item, every row of a seed on the same items in the
    same order; the batched metric (scd/stats.py); and None, or why the records cannot be resampled (then no data).
    Per item: correctness (accuracy, exact match); the item's own score (JMED-LLM entity F1, a mean over items);
    prediction and gold label codes (macro-F1, Cohen's kappa); entity counts (correct, predicted, gold) that the
    evaluation recorded (the seqeval metrics)."""
    for s in seeds:
        first = [r["id"] for r in records[(task, s, rows[0])]]
        for row in rows[1:]:
            if [r["id"] for r in records[(task, s, row)]] != first:
                raise ValueError(f"{sample_files[(task, s, row)]} holds other test items than "
                                 f"{sample_files[(task, s, rows[0])]}: one of them is stale or was edited; "
                                 "delete the stale one and rerun the workflow, which re-evaluates that model")
    keys = [(task, s, row) for row in rows for s in seeds]
    name, params = spec["name"], spec["params"]

    def readable(key: tuple, fn):
        try:
            return fn(records[key])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{sample_files[key]} holds a record that {name} cannot score ({type(e).__name__}: "
                             f"{e}): it is stale or was edited; delete it and rerun the workflow, which re-evaluates "
                             "that model") from None

    def per_item(fn, dtype=float) -> dict:
        return {row: [readable((task, s, row), lambda recs: np.array([fn(r) for r in recs], dtype=dtype))
                      for s in seeds] for row in rows}

    if name in MEAN_METRICS:
        return per_item(lambda r: r["pred"] == r["gold"]), stats.mean_metric, None
    if name in ITEM_MEAN_METRICS:
        score = metrics.get(name)
        return per_item(lambda r: score([r["pred"]], [r["gold"]], **params)), stats.mean_metric, None
    if name in ENTITY_COUNT_METRICS:
        lacking = [k for k in keys if any(not isinstance(r.get("entities"), dict) for r in records[k])]
        if lacking:
            return None, None, (f"{sample_files[lacking[0]]} carries no per-item entity counts (`entities`; "
                                "per-sample records of older code): delete it and rerun the workflow, which "
                                "re-evaluates that model")
        bad = next((k for k in keys if not all(_counts_ok(r["entities"]) for r in records[k])), None)
        if bad:
            raise ValueError(f"{sample_files[bad]} holds malformed entity counts (each record's `entities` needs "
                             "non-negative integers correct, predicted, absent and gold): it was edited; delete it "
                             "and rerun the workflow, which re-evaluates that model")
        strict = not name.endswith("_lenient")  # the strict metrics count absent mentions as predicted entities
        data = per_item(lambda r: [r["entities"]["correct"], r["entities"]["predicted"]
                                   + (r["entities"]["absent"] if strict else 0), r["entities"]["gold"]], np.int64)
        data = {row: [x.reshape(-1, 3) for x in xs] for row, xs in data.items()}
        return data, stats.entity_metric(name.split("_")[1]), None
    golds = {k: readable(k, lambda recs: [r["gold"] for r in recs]) for k in keys}
    labels = spec["labels"] or sorted({str(g) for k in keys for g in golds[k]})
    code = {label: i for i, label in enumerate(labels)}
    if name == "cohen_kappa":
        stray = next(((k, g) for k in keys for g in golds[k] if not (isinstance(g, str) and g in code)), None)
        if stray:
            raise ValueError(f"{sample_files[stray[0]]} holds the gold answer {stray[1]!r}, which is not among the "
                             f"task's labels {labels}: it is stale or was edited; delete it and rerun the workflow, "
                             "which re-evaluates that model")
        outside = params.get("outside", "max")
        if outside == "sklearn":  # every category seen, sorted; an unparsed answer is "None" (tasks/metrics.py)
            def raw(p):
                return p if _label(p) in code else (p or "None")
            preds = set().union(*(readable(k, lambda recs: {raw(r["pred"]) for r in recs}) for k in keys))
            seen = sorted({*labels, *preds})
            code = {c: i for i, c in enumerate(seen)}
            data = per_item(lambda r: [code[raw(r["pred"])], code[r["gold"]]], np.int64)
            n = len(seen)
        else:
            data = per_item(lambda r: [code.get(_label(r["pred"]), len(labels)), code[r["gold"]]], np.int64)
            n = len(labels) + 1
        data = {row: [x.reshape(-1, 2) for x in xs] for row, xs in data.items()}
        return data, stats.cohen_kappa_metric(n, params.get("weights"), outside), None
    data = per_item(lambda r: [code.get(_label(r["pred"]), -1), code.get(_label(r["gold"]), -1)], np.int64)
    return {row: [x.reshape(-1, 2) for x in xs] for row, xs in data.items()}, stats.macro_f1_metric(len(labels)), None


def _label(value):
    """A prediction or gold answer of a label task: a string (or None, an unparsed answer)."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"the answer {value!r} is not a label string")
    return value


def _counts_ok(entities) -> bool:
    return isinstance(entities, dict) and all(type(entities.get(k)) is int and entities[k] >= 0
                                              for k in ("correct", "predicted", "absent", "gold"))


def _column(out: dict, omitted: dict, col: str, point: dict, values: dict, compared: list[str]) -> None:
    for key, ref in REFERENCES.items():
        if ref not in point:
            omitted[col].append(f"{key}: no {ref} row with per-sample records")
            continue
        rows = [r for r in compared if r in point and r != ref]
        raw = {r: stats.compare(point[r], point[ref], values[r], values[ref]) for r in rows}
        adjusted = stats.holm({r: c["p"] for r, c in raw.items()})
        for r in rows:
            out["comparisons"].setdefault(col, {}).setdefault(r, {})[key] = raw[r] | {"p_holm": adjusted[r]}
    if "teacher_sft" in point and "student_sft" in point:
        out["gap_closed"][col] = {r: stats.gap_closed(
            (point[r], point["student_sft"], point["teacher_sft"]),
            (values[r], values["student_sft"], values["teacher_sft"])) for r in compared if r in point}
    else:
        omitted[col].append("gap_closed: needs the teacher_sft and student_sft rows")
    for key in REFERENCES:
        ses = [c[key]["se"] for c in out["comparisons"].get(col, {}).values() if key in c]
        if ses:
            se = float(np.median(ses))
            out["mde"][col] = {"value": stats.mde(se), "se": se, "reference": REFERENCES[key], "rows": len(ses)}
            break
    else:
        omitted[col].append("mde: no comparison to td or student_sft")


def read_json(path: Path, what: str) -> dict:
    """A JSON results file; a truncated or edited one is one line naming it and what rewrites it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path} is not valid JSON ({e}): delete it and rerun the workflow, which "
                         f"rewrites it") from None


def task_groups_of(tasks: list[str]) -> dict[str, list[str]]:
    """The registry's groups that hold at least two of these tasks, restricted to them (tasks no longer in the
    registry are left out)."""
    out = {}
    for group, members in sorted(task_groups().items()):
        mine = [t for t in members if t in tasks]
        if len(mine) >= 2:
            out[group] = mine
    return out


def _check_metrics(eval_files: list[Path], runs: list[dict]) -> None:
    """Every evaluation of a task reports the same metrics (its protocol's, and option scoring's beside them): a
    summary from other code, or from another `evaluation.mode`, would leave holes in the leaderboard's columns."""
    first: dict[str, tuple[Path, list[str]]] = {}
    for f, run in zip(eval_files, runs):
        keys = sorted(run.get("scores") or {run["metric"]: run["score"]})
        seen = first.setdefault(run["task"], (f, keys))
        if keys != seen[1]:
            raise ValueError(f"{f} scores task {run['task']!r} by {', '.join(keys)}, but {seen[0]} by "
                             f"{', '.join(seen[1])}: one was written by other code or under another evaluation.mode; "
                             f"delete the stale one and rerun the workflow, which re-evaluates that model")


def _lookup(files: list[Path], keys: list[tuple], path_of, what: str) -> dict[tuple, Path]:
    """key -> the given file at the layout's path for that key (`path_of(*key)`). A given file that is no key's
    is an error: it comes from another results directory, or its run has no evaluation summary here."""
    given = {os.path.abspath(f): Path(f) for f in files}
    found = {k: f for k in keys if (f := given.get(os.path.abspath(path_of(*k)))) is not None}
    stray = sorted(set(given.values()) - set(found.values()))
    if stray:
        raise ValueError(f"{what} {stray[0]} is the file of no evaluated run in this results directory")
    return found


class MissingRuns(ValueError):
    """Planned runs without an evaluation summary, or two summaries of one run."""


def expected_runs(expect: dict) -> list[tuple]:
    """The plan {task: {"seeds": [...], "models": [...]}} as (task, seed, model) keys."""
    try:
        return [(t, int(s), m) for t, plan in expect.items() for s in plan["seeds"] for m in plan["models"]]
    except (AttributeError, KeyError, TypeError, ValueError):
        raise MissingRuns(f"the expected plan {json.dumps(expect)[:200]} is not "
                          '{task: {"seeds": [...], "models": [...]}}') from None


def _check_runs(eval_files: list[Path], keys: list[tuple], expect: dict | None) -> None:
    seen: dict = {}
    for f, k in zip(eval_files, keys):
        if k in seen:
            raise MissingRuns(f"{seen[k]} and {f} are both the evaluation of {_name(k)}: one of them was copied or "
                              "moved; delete the wrong one and rerun the workflow")
        seen[k] = f
    if expect is None:
        return
    lacking = [k for k in expected_runs(expect) if k not in seen]
    if lacking:
        more = f" (and {len(lacking) - 3} more)" if len(lacking) > 3 else ""
        raise MissingRuns(
            f"{len(lacking)} planned run(s) have no evaluation summary among the inputs, the leaderboard would lack "
            f"them: {', '.join(map(_name, lacking[:3]))}{more}. Rerun the workflow (`snakemake --cores N` produces "
            "missing results; a results file that exists but is of another run: delete it, or `--forcerun` it)")


def _name(key: tuple) -> str:
    task, seed, model = key
    return f"{task} seed {seed} {model}"


def _key(run: dict) -> tuple:
    return run["task"], run["seed"], run["model"]


def schedules(runs: list[dict], rows: list[str], distilled: dict[tuple, dict]) -> dict:
    """Per task and method: each seed's selected checkpoints, and the AW weight histograms summed over seeds with
    the mean weight per subdomain and stage (mean over seeds)."""
    out: dict = defaultdict(dict)
    for r in sorted(runs, key=lambda r: r["seed"]):
        d = distilled.get(_key(r)) if r["model"] in rows else None
        if not d:
            continue
        entry = out[r["task"]].setdefault(r["model"], {"runs": [], "aw": []})
        entry["runs"].append({"seed": r["seed"], "schedule": d["schedule"], "checkpoints": d["checkpoints"],
                              "trajectory_problem": d.get("trajectory_problem")})
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


def ablation_results(runs: list[dict], plan: dict, distilled: dict[tuple, dict], manifests: dict[tuple, dict]
                     ) -> dict:
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
                    summaries = [distilled[_key(r)] for r in mine if _key(r) in distilled]
                    point = {"value": float(value), "method": name, "score": mean_std([r["score"] for r in mine])}
                    if summaries:
                        point["seconds"] = statistics.fmean(d.get("wall_seconds", d["train_seconds"])
                                                            for d in summaries)
                        point["checkpoint_bytes"] = _checkpoint_bytes(manifests.get((task, mine[0]["seed"])),
                                                                      summaries[0]["checkpoints"])
                    points.append(point)
                if points:
                    out.setdefault(axis, {}).setdefault(task, {})[base] = points
    return out


def oracle_results(runs: list[dict], plan: dict, rows: list[str]) -> dict:
    """Per task of the oracle plan ({task: {base: {"fixed": [rows], "reversed": row}}}, scd.config.oracle_plan):
    the candidates (each base, e.g. CD, its fixed-checkpoint rows and its reversed row: the one-checkpoint-at-a-
    time schedules), `best_row` (highest mean score over seeds; ties: the first in plan order) and `best_mean`,
    the ceiling a fixed checkpoint schedule reaches; and `regret[row]` for every other distilled row on the task
    (SCD's among them): per seed, best_row's score minus the row's, over the seeds both ran, as mean, std, n and
    values (positive: the row falls short of the ceiling). Pure: reads only `runs` ({task, seed, model, score})."""
    out: dict = {}
    for task, by_base in plan.items():
        score = defaultdict(dict)  # model -> seed -> score
        for r in runs:
            if r["task"] == task:
                score[r["model"]][r["seed"]] = r["score"]
        candidates = list(dict.fromkeys(m for base, planned in by_base.items()
                                        for m in [base, *planned["fixed"], planned["reversed"]] if score.get(m)))
        if not candidates:
            continue
        means = {m: statistics.fmean(score[m].values()) for m in candidates}
        best = max(candidates, key=lambda m: means[m])  # max keeps the first of equal means
        regret = {}
        for row in rows:
            if row in candidates or row in ROW_ORDER or not score.get(row):
                continue
            seeds = sorted(set(score[row]) & set(score[best]))
            if seeds:
                regret[row] = mean_std([score[best][s] - score[row][s] for s in seeds]) | {"seeds": seeds}
        out[task] = {"rows": candidates, "means": means, "best_row": best, "best_mean": means[best],
                     "regret": regret}
    return out


def _checkpoint_bytes(manifest: dict | None, names: list[str]) -> int | None:
    if manifest is None:
        return None
    sizes = manifest["checkpoints"]
    return sum(sizes[n]["checkpoint_bytes"] for n in names if n in sizes)


def decomposition(samples: dict[tuple, list[dict]], rows: list[str], sample_files: dict[tuple, Path]) -> dict:
    """TFS/SFS decomposition (scd/decompose.py) per task and model, mean/std over seeds, from the per-sample
    records of each (task, seed, model) and of that seed's teacher and student SFT models (read from
    `sample_files`, named when a record cannot be used)."""
    per: dict = defaultdict(lambda: defaultdict(list))
    # the (task, seed, model) keys with that seed's SFT models beside them, a seed's teacher_sft and student_sft
    # first; the SFT models are such keys too, so checking each key's own records once checks every list a
    # decomposition reads
    keys = sorted((k for k in samples if (k[0], k[1], "teacher_sft") in samples and (k[0], k[1], "student_sft")
                   in samples), key=lambda k: (k[0], k[1], k[2] != "teacher_sft", k[2] != "student_sft", k[2]))
    for key in keys:
        bad = next((r for r in samples[key] if not isinstance(r, dict) or "id" not in r or "correct" not in r
                    or isinstance(r.get("gold_nll"), bool) or not isinstance(r.get("gold_nll"), (int, float))), None)
        if bad is not None:
            what = bad.get("id") if isinstance(bad, dict) else bad
            raise ValueError(f"{sample_files[key]}: the record of item {what!r} lacks an id, a numeric gold_nll or a "
                             "correct field: the file is stale or was edited; delete it and rerun the workflow, which "
                             "re-evaluates that model")
    for task, seed, model in keys:
        per[task][model].append(decompose(samples[(task, seed, "teacher_sft")], samples[(task, seed, "student_sft")],
                                          samples[(task, seed, model)]))
    out: dict = {}
    for task, models in per.items():
        out[task] = {m: {k: mean_std([d[k] for d in ds]) for k in ds[0] if k != "n"} | {"n_samples": ds[0]["n"]}
                     for m, ds in models.items() if m in rows}
    return out


COSTS = ("train_seconds", "teacher_seconds", "peak_rss_bytes", "disk_bytes")


def compute_costs(runs: list[dict], rows: list[str], distilled: dict[tuple, dict], manifests: dict[tuple, dict]
                  ) -> dict:
    """What each row's jobs cost, from the jobs' own records: per task and row, mean/std over seeds of the training
    seconds (SFT, or distillation), the seconds a distillation ran the teacher live (on-policy samples, generated
    responses), the peak resident memory of the row's jobs (the larger of training and test evaluation) and the
    bytes they left (model directories, with the teacher's trajectory for teacher_sft, and the evaluation's
    samples). The shared teacher-output job of each task and seed (one pass per checkpoint, read by every
    distillation of the seed) is given apart: `teacher_outputs`. `total`: per row, the seconds and bytes summed
    over tasks and the largest peak memory (rows with a figure for every task). A figure some run did not record
    (results of older code) is left out rather than counted as zero."""
    tasks = sorted({r["task"] for r in runs})
    per_task: dict = {}
    for task in tasks:
        for row in rows:
            mine = [r for r in runs if r["task"] == task and r["model"] == row]
            records = [_run_costs(r, distilled.get(_key(r))) for r in mine]
            entry = {k: mean_std(v) for k in COSTS if records and None not in (v := [c[k] for c in records])}
            # (a figure missing from one seed's record is left out for the row: a mean of fewer seeds would hide it)
            if entry:
                per_task.setdefault(task, {})[row] = entry
    shared: dict = {}
    for task in tasks:
        records = [_teacher_outputs_costs(m) for (t, _), m in sorted(manifests.items()) if t == task]
        entry = {k: mean_std(v) for k in ("seconds", "peak_rss_bytes", "disk_bytes")
                 if records and None not in (v := [c[k] for c in records])}
        if entry:
            methods = sorted({r["model"] for r in runs if r["task"] == task and _key(r) in distilled})
            shared[task] = entry | {"methods": methods}
    total: dict = {}
    for row in rows:
        mine = [per_task.get(t, {}).get(row) for t in tasks]
        if not tasks or None in mine:
            continue
        total[row] = {k: (max if k == "peak_rss_bytes" else sum)(e[k]["mean"] for e in mine)
                      for k in COSTS if all(k in e for e in mine)}
    shared_total = {k: (max if k == "peak_rss_bytes" else sum)(shared[t][k]["mean"] for t in shared)
                    for k in ("seconds", "peak_rss_bytes", "disk_bytes") if shared and all(k in e for e in
                                                                                          shared.values())}
    return {"tasks": per_task, "teacher_outputs": shared, "total": total, "teacher_outputs_total": shared_total}


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _run_costs(run: dict, distilled: dict | None) -> dict:
    """One run's costs: its training job's (the distillation summary, or the SFT job's as its evaluation copied
    them) with its evaluation's. Zero-shot rows train nothing (0 s); a trained row without its training's record
    (results of older code) has no figures. Only a distillation has a live teacher."""
    evaluation = [_number(run.get(k)) for k in ("peak_rss_bytes", "disk_bytes")]
    if run["model"].endswith("_zero_shot"):
        return {"train_seconds": 0.0, "teacher_seconds": None, "peak_rss_bytes": evaluation[0],
                "disk_bytes": evaluation[1]}
    train = distilled if distilled is not None else run.get("training")
    if not isinstance(train, dict):
        return dict.fromkeys(COSTS)
    rss, disk = [evaluation[0], _number(train.get("peak_rss_bytes"))], [evaluation[1], _number(train.get("disk_bytes"))]
    return {"train_seconds": _number(train.get("train_seconds")),
            "teacher_seconds": _number(train.get("teacher_seconds")) if distilled is not None else None,
            "peak_rss_bytes": None if None in rss else max(rss),
            "disk_bytes": None if None in disk else sum(disk)}


def _teacher_outputs_costs(manifest: dict) -> dict:
    checkpoints = manifest.get("checkpoints") or {}
    seconds = _number(manifest.get("seconds"))
    if seconds is None and checkpoints:
        values = [_number(c.get("seconds")) for c in checkpoints.values()]
        seconds = None if None in values else sum(values)
    return {"seconds": seconds, "peak_rss_bytes": _number(manifest.get("peak_rss_bytes")),
            "disk_bytes": _number(manifest.get("disk_bytes"))}


def stamp() -> dict:
    """Which code aggregated, when and where: the checkout's commit (and whether tracked files were changed), the
    UTC date, and the machine (host name, platform, CPU count), for the top of the report."""
    commit, dirty = git_state()
    return {"commit": commit, "dirty": dirty, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{socket.gethostname()} ({platform.platform()}, {os.cpu_count()} CPUs)"}


def majority_rates(samples: dict[tuple, list[dict]]) -> dict:
    """Per task with per-sample records: the test split's most frequent gold answer, its share of the items
    (`rate`: the accuracy of always answering it) and the number of items `n`, from the golds of the task's first
    records file (every model of a task is scored on the same test items)."""
    out = {}
    for (task, _, _), recs in sorted(samples.items()):
        if task in out or not recs or any("gold" not in r for r in recs):
            continue
        counts = Counter(json.dumps(r["gold"], sort_keys=True) for r in recs)
        top, count = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        out[task] = {"label": json.loads(top), "rate": count / len(recs), "n": len(recs)}
    return out
