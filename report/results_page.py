"""Results files -> a Markdown results page, stamped with the code's commit, the date, the machine and the command.

    python -m report.results_page --results results --out docs/results/default.md --command "snakemake --cores 2"

Measured results are never typed into the documentation: this page is written from the files a run leaves in its
results directory, so a number on it is always the number in those files, and the stamp says which code, machine
and command produced them. It reads:

- `leaderboard.json` (written by `scd aggregate`): per row and task the mean, std and number of seeds, and the
  compute table (training and live-teacher seconds, peak RSS, disk: the report's figures, from the same file);
- the jobs' own time records, where present: `<task>/seed<k>/{teacher,student}/summary.json` (`train_seconds`),
  `<task>/seed<k>/teacher_outputs/manifest.json` (`seconds` per checkpoint), `<task>/seed<k>/distill/<method>/
  summary.json` (`wall_seconds`);
- `mlflow.db`, where present: the start and end of every workflow invocation (its parent run, tag
  `scd.kind=workflow`) and the environment the jobs logged (`env.*` parameters).

Standard library only: it runs without torch or MLflow installed, and imports nothing from the package but the
results layout (scd/layout.py, standard library only too), which names every file above.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from scd.checkout import git_state
from scd.layout import Layout

REPO = Path(__file__).resolve().parent.parent
ALPHA = 0.05  # the significance level the pages and the report mark a difference at
NO_COMMAND = "not given (pass --command with the command that produced the results)"
# Environment parameters the jobs log to MLflow (scd/tracking.py: environment()), shown as recorded at run time.
RUN_ENV = (("code.commit", "code commit"), ("code.dirty", "uncommitted changes"), ("env.platform", "platform"),
           ("env.cpu_count", "CPU count"), ("env.torch_threads", "torch threads"),
           ("env.device", "device"), ("env.python", "python"), ("env.version.torch", "torch"))


class ResultsError(Exception):
    """The results directory cannot make a page (missing or malformed leaderboard): one line for the user."""


# -- reading -------------------------------------------------------------------------------------------------
def read_leaderboard(results_dir: Path) -> dict:
    path = Layout(results_dir).leaderboard()
    if not path.is_file():
        raise ResultsError(f"{path} not found: run the workflow first (its aggregate step writes leaderboard.json), "
                           f"or point --results at the results directory that holds it")
    try:
        lb = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path} is not valid JSON ({e}); rerun the aggregate step") from None
    if not isinstance(lb, dict):
        raise ResultsError(f"{path}: expected a JSON object (the leaderboard), got {type(lb).__name__}")
    missing = [k for k in ("tasks", "rows", "cells") if k not in lb]
    if missing:
        raise ResultsError(f"{path}: missing the key(s) {', '.join(missing)}; is this a leaderboard written by "
                           f"`scd aggregate`?")
    return lb


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def job_times(results_dir: Path) -> list[dict]:
    """Per kind of job: how many recorded a time, and the sum, min and max of those times (seconds)."""
    root, every = Path(results_dir), Layout(".")  # every task, seed and method: glob patterns under root
    kinds = [
        ("teacher SFT", every.sft_summary("*", "*", "teacher"), lambda d: _number(d.get("train_seconds"))),
        ("student SFT", every.sft_summary("*", "*", "student"), lambda d: _number(d.get("train_seconds"))),
        ("teacher outputs", every.teacher_outputs_manifest("*", "*"), _teacher_output_seconds),
        ("distillation", every.distill_summary("*", "*", "*"), lambda d: _number(d.get("wall_seconds"))),
    ]
    out = []
    for kind, pattern, seconds_of in kinds:
        pattern = pattern.as_posix()
        times = []
        for path in sorted(root.glob(pattern)):
            data = _read_json(path)
            value = seconds_of(data) if data else None
            if value is not None:
                times.append(value)
        if times:
            out.append({"kind": kind, "source": pattern, "jobs": len(times), "total": sum(times),
                        "min": min(times), "max": max(times)})
    return out


def _teacher_output_seconds(manifest: dict) -> float | None:
    checkpoints = manifest.get("checkpoints")
    if not isinstance(checkpoints, dict) or not checkpoints:
        return None
    values = [_number(c.get("seconds")) if isinstance(c, dict) else None for c in checkpoints.values()]
    return None if None in values else sum(values)


def _sqlite(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def workflow_runs(results_dir: Path) -> list[dict]:
    """The workflow invocations recorded in `mlflow.db` (parent runs tagged scd.kind=workflow), oldest first."""
    db = Layout(results_dir).mlflow_db()
    if not db.is_file():
        return []
    try:
        with _sqlite(db) as con:
            rows = con.execute(
                "SELECT r.name, r.start_time, r.end_time, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid"
                " WHERE t.key = 'scd.kind' AND t.value = 'workflow' ORDER BY r.start_time").fetchall()
    except sqlite3.Error:
        return []
    return [{"name": name, "start_ms": start, "end_ms": end, "status": status} for name, start, end, status in rows]


def run_environment(results_dir: Path) -> dict[str, list[str]]:
    """The distinct values of the environment parameters the jobs logged to `mlflow.db`."""
    db = Layout(results_dir).mlflow_db()
    if not db.is_file():
        return {}
    keys = [k for k, _ in RUN_ENV]
    try:
        with _sqlite(db) as con:
            rows = con.execute(f"SELECT DISTINCT key, value FROM params WHERE key IN ({','.join('?' * len(keys))})"
                               " ORDER BY key, value", keys).fetchall()
    except sqlite3.Error:
        return {}
    out: dict[str, list[str]] = {}
    for key, value in rows:
        out.setdefault(key, []).append(value)
    return out


# -- the stamp -----------------------------------------------------------------------------------------------
def code_commit() -> str:
    commit, dirty = git_state()
    if commit == "unknown":
        return "unknown (not a git checkout)"
    return commit + {"true": " (with uncommitted changes)", "false": ""}.get(dirty, " (state unknown)")


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def stamp(command: str, now: datetime | None = None) -> list[tuple[str, str]]:
    now = now or datetime.now(timezone.utc)
    return [("code commit", code_commit()),
            ("date (UTC)", now.strftime("%Y-%m-%d %H:%M:%S")),
            ("machine", platform.platform()),
            ("CPU count", str(os.cpu_count())),
            ("python", platform.python_version()),
            ("torch", _package_version("torch")),
            ("command", command)]


# -- writing -------------------------------------------------------------------------------------------------
def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _cell(c) -> str:
    if not isinstance(c, dict) or _number(c.get("mean")) is None:
        return "–"
    text = f"{c['mean']:.3f}"
    if _number(c.get("std")) is not None and not (isinstance(c.get("n"), int) and c["n"] < 2):
        text += f" ± {c['std']:.3f}"  # the std over seeds: one seed has none
    if isinstance(c.get("n"), int):
        text += f" (n={c['n']})"
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(r) + " |" for r in rows])


def _duration(seconds: float) -> str:
    whole = int(round(seconds))
    h, rest = divmod(whole, 3600)
    return f"{h} h {rest // 60:02d} min {rest % 60:02d} s" if h else f"{rest // 60} min {rest % 60:02d} s"


def _utc(ms) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def leaderboard_section(lb: dict) -> list[str]:
    tasks = list(lb["tasks"])
    cols = tasks + (["average"] if any("average" in (lb["cells"].get(r) or {}) for r in lb["rows"]) else [])
    metric = lb.get("metric") or {}
    header = ["model"] + [f"{c} ({metric[c]})" if c in metric else c for c in cols]
    rows = []
    for row in lb["rows"]:
        cells = lb["cells"].get(row) or {}
        rows.append([f"`{_md(row)}`"] + [_cell(cells.get(c)) for c in cols])
    seeds = sorted({s for r in lb["rows"] for c in (lb["cells"].get(r) or {}).values() if isinstance(c, dict)
                    for s in c.get("seeds") or []})
    lines = ["## Leaderboard", "",
             "Test split, each task's headline metric: mean ± std over seeds (n = number of seeds); `average` is the "
             "mean over tasks of each seed's scores, then mean ± std over seeds. A higher mean is not a win unless the "
             "difference's confidence interval excludes zero: the intervals are in the comparisons below."]
    if seeds:
        lines[-1] += " Seeds: " + ", ".join(str(s) for s in seeds) + "."
    return lines + [""] + _table(header, rows)


def _signed(x) -> str:
    return f"{x:+.3f}" if _number(x) is not None else "–"


def _interval(c: dict | None) -> str:
    """`+0.012 [-0.004, +0.027]`; bold when the Holm-adjusted p is below 0.05 and the interval excludes zero."""
    if not isinstance(c, dict) or _number(c.get("diff")) is None:
        return "–"
    lo, hi = (c.get("ci95") or [None, None])[:2]
    text = f"{c['diff']:+.3f} [{_signed(lo)}, {_signed(hi)}]"
    p = _number(c.get("p_holm"))
    if p is not None:
        text += f", p {p:.3f}"
    return f"**{text}**" if significant(c) else text


def significant(c: dict | None) -> bool:
    """A difference the pages and the report may call one: Holm-adjusted p < ALPHA and a 95% interval that excludes
    zero, both; a comparison with a missing or non-numeric field is none."""
    if not isinstance(c, dict):
        return False
    p, (lo, hi) = _number(c.get("p_holm")), (c.get("ci95") or [None, None])[:2]
    return p is not None and p < ALPHA and _number(lo) is not None and _number(hi) is not None and (lo > 0 or hi < 0)


def _gap(g: dict | None) -> str:
    if not isinstance(g, dict) or _number(g.get("value")) is None:
        return "–"
    if not g.get("meaningful"):
        return "(teacher not clearly ahead)"
    lo, hi = (g.get("ci95") or [None, None])[:2]
    return f"{g['value']:.2f} [{lo:.2f}, {hi:.2f}]" if _number(lo) is not None and _number(hi) is not None \
        else f"{g['value']:.2f}"


def statistics_section(lb: dict) -> list[str]:
    """Every distilled row against TD and against student-SFT per task and on average: the paired difference with
    its 95% hierarchical-bootstrap interval and Holm-adjusted p, the gap closed, the design's minimum detectable
    effect; then the ranks across tasks and the oracle schedules. Only what `scd aggregate` computed is shown."""
    comps = lb.get("comparisons") or {}
    if not comps:
        omitted = ((lb.get("statistics") or {}).get("omitted") or {})
        why = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(omitted.items()) if v)
        return ["", "## Comparisons", "", "No comparisons in this leaderboard" + (f" ({_md(why)})." if why else ".")]
    meta = lb.get("statistics") or {}
    lines = ["", "## Comparisons", "",
             "Each row minus TD and minus student-SFT on the same test items and seeds (paired): the difference, its "
             "95% interval from a hierarchical bootstrap (seeds, then items within a seed), and the p-value Holm-"
             "adjusted over the rows compared. **Bold**: adjusted p < 0.05 and an interval that excludes zero; "
             "anything else is not a difference this run can claim. Gap closed: (row - student-SFT) / (teacher-SFT "
             "- student-SFT) with its interval, shown only where the teacher is clearly ahead. Detectable: the "
             "minimum detectable effect of this design (80% power, alpha 0.05: 2.8 x the median standard error of "
             "the differences)."]
    if meta.get("resamples"):
        lines[-1] += f" Bootstrap resamples: {meta['resamples']}."
    seeds = meta.get("seeds") or {}
    if any(len(v) == 1 for v in seeds.values() if isinstance(v, list)):
        lines[-1] += " With one seed an interval covers the test items only, not training variance."
    for col in [c for c in [*lb["tasks"], "average"] if c in comps]:
        metric = (lb.get("metric") or {}).get(col)
        mde = (lb.get("mde") or {}).get(col) or {}
        head = f"### {col}" + (f" ({metric})" if metric else "")
        lines += ["", head, ""]
        if _number(mde.get("value")) is not None:
            lines += [f"Detectable here: {mde['value']:.3f} (median standard error {mde['se']:.4f} of the "
                      f"{mde.get('rows', '?')} differences to `{mde.get('reference', '?')}`).", ""]
        rows = [r for r in lb["rows"] if r in comps[col]]
        gaps = (lb.get("gap_closed") or {}).get(col) or {}
        lines += _table(["model", "vs TD", "vs student-SFT", "gap closed"],
                        [[f"`{_md(r)}`", _interval(comps[col][r].get("vs_td")),
                          _interval(comps[col][r].get("vs_student_sft")), _gap(gaps.get(r))] for r in rows])
    for col, reasons in sorted((meta.get("omitted") or {}).items()):
        if reasons:
            lines += ["", f"Not computed for {col}: " + _md("; ".join(reasons)) + "."]
    lines += ranks_section(lb) + oracle_section(lb)
    return lines


def ranks_section(lb: dict) -> list[str]:
    ranks = lb.get("ranks") or {}
    if not ranks:
        return []
    fr, cd = lb.get("friedman") or {}, lb.get("critical_difference") or {}
    lines = ["", "### Ranks across tasks", "",
             "Average rank of each row over the tasks (1 = best; Demšar 2006). "]
    if _number(fr.get("p")) is not None:
        lines[-1] += f"Friedman's test of equal ranks: statistic {fr['statistic']:.2f}, p {fr['p']:.3f}. "
    elif fr.get("reason"):
        lines[-1] += f"Friedman's test: not computed ({_md(fr['reason'])}). "
    if _number(cd.get("cd")) is not None:
        lines[-1] += (f"Nemenyi critical difference (alpha {cd.get('alpha')}): {cd['cd']:.2f}; rows whose ranks differ "
                      "by less are not distinguishable.")
    lines += [""] + _table(["model", "average rank"], [[f"`{_md(r)}`", f"{v:.2f}"]
                                                        for r, v in sorted(ranks.items(), key=lambda kv: kv[1])])
    return lines


def oracle_section(lb: dict) -> list[str]:
    oracle = lb.get("oracle") or {}
    if not oracle:
        return []
    lines = ["", "### Oracle schedules", "",
             "Rows that distil from one fixed trajectory checkpoint at every stage, CD and CD reversed: the best of "
             "them by mean is the ceiling a one-checkpoint schedule reached here (a maximum over noisy means, so "
             "optimistic). Regret: best minus the row, mean ± std over seeds; each oracle row's difference to TD "
             "with its interval is in the tables above.", ""]
    rows = []
    for task, o in sorted(oracle.items()):
        regret = "; ".join(f"`{_md(r)}` {_cell(v)}" for r, v in sorted((o.get("regret") or {}).items()))
        rows.append([task, ", ".join(f"`{_md(r)}`" for r in o.get("rows") or []), f"`{_md(o.get('best_row'))}`",
                     f"{o['best_mean']:.3f}" if _number(o.get("best_mean")) is not None else "–", regret or "–"])
    return lines + _table(["task", "oracle rows", "best", "best mean", "regret"], rows)


def schedules_section(lb: dict) -> list[str]:
    """Per task, each distilled row's teacher checkpoint at every stage, the seeds that took the same path together
    (the leaderboard's `schedules`); a trajectory the distillation flagged is said below its task's table."""
    lines = []
    for task, per_row in sorted((lb.get("schedules") or {}).items()):
        rows, problems = [], set()
        for row in [r for r in lb["rows"] if r in per_row] + sorted(set(per_row) - set(lb["rows"])):
            paths: dict[tuple, list] = {}
            for run in per_row[row].get("runs") or []:
                paths.setdefault(tuple(run.get("schedule") or ()), []).append(run.get("seed"))
                if run.get("trajectory_problem"):
                    problems.add(str(run["trajectory_problem"]))
            rows.append([f"`{_md(row)}`", "; ".join(
                f"{' → '.join(map(_md, path)) or '–'} (seed{'s' * (len(seeds) != 1)} {', '.join(map(str, seeds))})"
                for path, seeds in paths.items())])
        if rows:
            lines += ["", f"### {task}", ""] + _table(["model", "checkpoint per stage (seeds)"], rows)
            lines += [x for p in sorted(problems) for x in ("", f"Trajectory flagged: {_md(p)}")]
    if not lines:
        return []
    return ["", "## Teacher schedules", "",
            "The teacher checkpoint each distillation stage learnt from (`best` is T*, the teacher-SFT model), as "
            "each distillation recorded it; SCD's rows chose theirs at the start of every stage."] + lines


def subdomain_section(lb: dict) -> list[str]:
    lines = []
    for task, per_row in sorted((lb.get("subdomains") or {}).items()):
        names = sorted({n for subs in per_row.values() for n in subs})
        if not names:
            continue
        rows = [[f"`{_md(row)}`"] + [_cell((per_row.get(row) or {}).get(n)) for n in names]
                for row in lb["rows"] if row in per_row]
        metric = (lb.get("metric") or {}).get(task)
        lines += ["", f"### {task}: per subdomain" + (f" ({metric})" if metric else ""), ""]
        lines += _table(["model"] + names, rows)
    return (["", "## Per subdomain"] + lines) if lines else []


def time_section(results_dir: Path) -> list[str]:
    runs = workflow_runs(results_dir)
    jobs = job_times(results_dir)
    lines = ["", "## Time", ""]
    if runs:
        lines += ["Wall time of each workflow invocation on this results directory, from its parent run in "
                  "`mlflow.db` (an invocation that found nothing to do takes seconds):", ""]
        rows = []
        for r in runs:
            ended = r["end_ms"] is not None and r["start_ms"] is not None
            rows.append([_md(r["name"]), _utc(r["start_ms"]) if r["start_ms"] is not None else "–",
                         _duration((r["end_ms"] - r["start_ms"]) / 1000) if ended else "not ended",
                         _md(r["status"])])
        lines += _table(["invocation", "started (UTC)", "wall time", "status"], rows)
    else:
        lines += ["No workflow invocation recorded in `mlflow.db` here (the store is elsewhere, e.g. an MLflow "
                  "server, or was removed), so the run's wall time is not on this page."]
    if jobs:
        lines += ["", "Seconds the jobs measured themselves (SFT: the training loop with its validation; teacher "
                  "outputs: the passes over the checkpoints; distillation: the whole distillation). None of them "
                  "counts process start-up, data preparation or the test evaluation.", ""]
        lines += _table(["jobs", "count", "sum s", "min s", "max s", "read from"],
                        [[j["kind"], str(j["jobs"]), f"{j['total']:.1f}", f"{j['min']:.1f}", f"{j['max']:.1f}",
                          f"`{j['source']}`"] for j in jobs])
    return lines


COMPUTE_COLS = (("train_seconds", "training s", 1), ("teacher_seconds", "teacher, live s", 1),
                ("peak_rss_bytes", "peak RSS MB", 1e6), ("disk_bytes", "disk MB", 1e6))


def compute_section(lb: dict) -> list[str]:
    """The leaderboard's compute table (`compute`, written by `scd aggregate` from the jobs' records): per row,
    summed over tasks (peak memory: the largest), mean over seeds."""
    comp = lb.get("compute") if isinstance(lb.get("compute"), dict) else {}
    total = comp.get("total") or {}
    if not total:
        return []
    rows = [[f"`{_md(row)}`"] + [f"{v / scale:.1f}" if (v := _number(total[row].get(k))) is not None else "–"
                                 for k, _, scale in COMPUTE_COLS] for row in lb["rows"] if row in total]
    lines = ["", "## Compute", "",
             "From `leaderboard.json` (the jobs' own records), summed over tasks, mean over seeds; peak RSS is the "
             "largest of the row's jobs. Training: the SFT or distillation loop with its validation; teacher, live: "
             "the seconds a distillation ran the teacher itself; disk: the bytes the row's jobs left. The shared "
             "teacher-outputs job, once per task and seed, is below the table; the HTML report has the figures per "
             "task.", ""]
    lines += _table(["model"] + [t for _, t, _ in COMPUTE_COLS], rows)
    shared = comp.get("teacher_outputs_total") or {}
    if all(_number(shared.get(k)) is not None for k in ("seconds", "peak_rss_bytes", "disk_bytes")):
        lines += ["", f"Shared teacher outputs (read by every distillation of a seed), summed over tasks: "
                  f"{shared['seconds']:.1f} s, peak RSS {shared['peak_rss_bytes'] / 1e6:.1f} MB, "
                  f"{shared['disk_bytes'] / 1e6:.1f} MB of cache per seed (temporary: deleted once the distillations "
                  f"have read it)."]
    return lines


def environment_section(results_dir: Path) -> list[str]:
    env = run_environment(results_dir)
    if not env:
        return []
    rows = [[label, "; ".join(_md(v) for v in env[key])] for key, label in RUN_ENV if key in env]
    return (["", "## Environment the jobs recorded", "",
             "The code and environment parameters every job logged to MLflow (all distinct values):", ""]
            + _table(["parameter", "value"], rows))


def render_page(lb: dict, results_dir: Path, command: str, now: datetime | None = None) -> str:
    profile = lb.get("profile")
    title = f"Results: profile `{profile}`" if profile else "Results"
    lines = [f"# {title}", "",
             "Generated by `python -m report.results_page` from the files in the results directory; do not edit by "
             "hand, regenerate after a run. Every number below is read from those files. The stamp is the code, "
             "machine and time this page was written (right after the run, from the same checkout); the environment "
             "the jobs recorded while they ran is at the end.", ""]
    lines += _table(["stamp", ""], [[k, _md(v)] for k, v in
                                    stamp(command, now) + [("results directory", str(results_dir))]
                                    + ([("profile", _md(profile))] if profile else [])])
    for task, files in sorted((lb.get("data_modified") or {}).items()):  # allowed on purpose: said on the page
        lines += ["", f"> Modified data: task `{task}` ran on data that differs from its pinned files ("
                  + "; ".join(f"`{name}` sha256 {h.get('found')}, pinned {h.get('expected')}"
                              for name, h in sorted(files.items())) + "): its scores are not comparable."]
    lines += [""] + leaderboard_section(lb) + statistics_section(lb) + schedules_section(lb) + subdomain_section(lb)
    lines += time_section(results_dir) + compute_section(lb)
    lines += environment_section(results_dir)
    lines += ["", "The HTML report beside the leaderboard (`report.html` in the results directory) has the per-seed "
              "values, every metric of each task, the TFS/SFS decomposition, the AW weights and the ablations.", ""]
    return "\n".join(lines)


def readme_summary(lb: dict, results_dir: Path, page: str, command: str, now: datetime | None = None) -> list[str]:
    """The README's few lines for a results page: on the average column (the one task's where there is one), the
    reference rows and every distilled row but the oracle ones, with their difference to TD and to student-SFT and
    the gap closed; the design's detectable effect, the best oracle row, the wall time and the stamp; a link to
    `page` for the rest."""
    comps, cells = lb.get("comparisons") or {}, lb.get("cells") or {}
    col = "average" if "average" in comps or len(lb["tasks"]) != 1 else lb["tasks"][0]
    # the oracle's own rows (`cd.ckpt1`, `cd.reversed`: variants of a base row among them) stay on the page
    oracle = {r for o in (lb.get("oracle") or {}).values() for r in o.get("rows") or []}
    variants = {r for r in oracle if any(r.startswith(base + ".") for base in oracle - {r})}
    rows = [r for r in lb["rows"] if r in ("teacher_sft", "student_sft") or (r in (comps.get(col) or {})
                                                                           and r not in variants)]
    gaps = (lb.get("gap_closed") or {}).get(col) or {}
    seeds = sorted({s for r in rows for c in (cells.get(r) or {}).values() if isinstance(c, dict)
                    for s in c.get("seeds") or []})
    lines = [f"Profile `{_md(lb.get('profile'))}`, {col} over {', '.join(lb['tasks'])}"
             + (f", seeds {', '.join(str(s) for s in seeds)}" if seeds else "") + " (**bold**: a difference the "
             "interval and the Holm-adjusted p both support):", ""]
    lines += _table(["model", "score", "vs TD", "vs student-SFT", "gap closed"],
                    [[f"`{_md(r)}`", _cell((cells.get(r) or {}).get(col)),
                      _interval(((comps.get(col) or {}).get(r) or {}).get("vs_td")),
                      _interval(((comps.get(col) or {}).get(r) or {}).get("vs_student_sft")), _gap(gaps.get(r))]
                     for r in rows])
    notes = ["One seed: its intervals cover the test items only, not training variance."] if len(seeds) == 1 else []
    mde = ((lb.get("mde") or {}).get(col) or {}).get("value")
    if _number(mde) is not None:
        notes.append(f"Detectable here: {mde:.3f}.")
    for task, o in sorted((lb.get("oracle") or {}).items()):
        regret = (o.get("regret") or {}).get("scd")
        if _number(o.get("best_mean")) is not None:
            notes.append(f"Best oracle schedule on {task}: `{_md(o.get('best_row'))}` {o['best_mean']:.3f}"
                         + (f", SCD's regret {_cell(regret)}." if isinstance(regret, dict) else "."))
    runs = [r for r in workflow_runs(results_dir) if r["start_ms"] is not None and r["end_ms"] is not None]
    if runs:
        total = sum(r["end_ms"] - r["start_ms"] for r in runs) / 1000
        notes.append(f"Wall time: {_duration(total)} over {len(runs)} workflow invocation{'s' * (len(runs) != 1)}.")
    env = run_environment(results_dir)
    if env.get("code.commit"):
        dirty = " (with uncommitted changes)" if "true" in env.get("code.dirty", []) else ""
        notes.append(f"The jobs ran commit {', '.join(c[:7] for c in env['code.commit'])}{dirty}.")
    st = dict(stamp(command, now))
    commit, _, state = st["code commit"].partition(" ")
    notes.append(f"Page written at commit {commit[:7]}{' ' + state if state else ''}, {st['date (UTC)'][:10]}, "
                 f"{st['machine']}, {st['CPU count']} CPUs; `{command}`; everything else: [{page}]({page}).")
    return lines + ["", " ".join(notes)]


def replace_readme_block(readme: Path, profile: str, block: list[str]) -> None:
    """Put `block` between the README's `<!-- results:<profile>:start -->` and `... :end -->` lines."""
    start, end = f"<!-- results:{profile}:start -->", f"<!-- results:{profile}:end -->"
    text = readme.read_text(encoding="utf-8")
    if start not in text or end not in text or text.index(start) > text.index(end):
        raise ResultsError(f"{readme}: no '{start}' ... '{end}' lines to put the summary between; add them where "
                           "it belongs")
    head, rest = text.split(start, 1)
    tmp = readme.with_name(readme.name + ".partial")
    tmp.write_text(head + start + "\n" + "\n".join(block) + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")
    tmp.replace(readme)


def write_results_page(results_dir: Path, out: Path, command: str) -> None:
    """Write the Markdown results page for `results_dir` to `out`; raises ResultsError when there is no usable
    leaderboard."""
    results_dir, out = Path(results_dir), Path(out)
    page = render_page(read_leaderboard(results_dir), results_dir, command)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m report.results_page",
        description="Write a Markdown results page from a results directory (leaderboard.json, the jobs' time "
                    "records, mlflow.db), stamped with the code's commit, the date, the machine and the command.")
    ap.add_argument("--results", default="results", help="the results directory (default: results)")
    ap.add_argument("--out", help="the page to write (default: docs/results/<profile>.md, the profile named in "
                                  "leaderboard.json)")
    ap.add_argument("--command", default=NO_COMMAND,
                    help="the command that produced the results, for the stamp, e.g. \"snakemake --cores 2\"")
    ap.add_argument("--readme", type=Path,
                    help="also put a summary between this README's `<!-- results:<profile>:start -->` and "
                         "`<!-- results:<profile>:end -->` lines, linking to the page")
    args = ap.parse_args(argv)
    results = Path(args.results)
    try:
        lb = read_leaderboard(results)
        profile = lb.get("profile") or "results"
        out = Path(args.out) if args.out else Path("docs/results") / f"{profile}.md"
        write_results_page(results, out, args.command)
        print(f"wrote {out}")
        if args.readme:
            link = os.path.relpath(out.resolve(), args.readme.resolve().parent)
            replace_readme_block(args.readme, profile, readme_summary(lb, results, link, args.command))
            print(f"wrote the {profile} summary into {args.readme}")
    except ResultsError as e:
        raise SystemExit(f"results page: {e}") from None
    except OSError as e:
        raise SystemExit(f"results page: cannot write {e.filename or args.out}: {e.strerror}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
