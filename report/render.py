"""Leaderboard JSON (scd/stages/aggregate.py) -> one self-contained HTML page; plots come from scd/plots.py as
inline SVG, so nothing loads from the network.
"""
from __future__ import annotations

import html
from pathlib import Path

from scd import plots

STYLE = (Path(__file__).parent / "style.css").read_text()
LABELS = {"teacher_sft": "teacher-SFT", "student_sft": "student-SFT", "teacher_zero_shot": "teacher (zero-shot)",
          "student_zero_shot": "student (zero-shot)"}


def label(row: str) -> str:
    """teacher_sft -> teacher-SFT; method names in capitals (scd+aw -> SCD+AW), variant suffixes kept."""
    base, dot, variant = row.partition(".")
    return LABELS.get(row) or (base.upper() if len(base) <= 8 else base) + dot + variant


def cell(c: dict | None, best: bool) -> str:
    if not c:
        return "<td class='missing'>–</td>"
    text = f"{c['mean']:.3f} ± {c['std']:.3f} <span class='n'>(n={c['n']})</span>"
    title = html.escape("per seed: " + ", ".join(f"{v:.3f}" for v in c["values"]))
    return f"<td class='{'best' if best else ''}' title='{title}'>{'<b>' + text + '</b>' if best else text}</td>"


def leaderboard_table(lb: dict) -> str:
    cols = lb["tasks"] + ["average"]
    head = "".join(f"<th>{html.escape(c)}<br><span class='metric'>{html.escape(lb['metric'].get(c, 'mean'))}"
                   f"</span></th>" for c in cols)
    body = []
    for row in lb["rows"]:
        cells = "".join(cell(lb["cells"][row].get(c), row in lb["best"].get(c, [])) for c in cols)
        body.append(f"<tr><th class='row'>{html.escape(label(row))}</th>{cells}</tr>")
    return (f"<table class='leaderboard'><thead><tr><th>model</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def metrics_table(lb: dict, task: str) -> str:
    """Every metric of a task with more than one (e.g. accuracy and kappa), best mean per column in bold."""
    keys = list((lb.get("metrics") or {}).get(task) or [])
    if len(keys) < 2:
        return ""
    rows = [r for r in lb["rows"] if task in lb["cells"][r]]
    directions = lb["metrics"][task]
    best = {}
    for k in keys:
        means = [lb["cells"][r][task]["scores"][k]["mean"] for r in rows]
        best[k] = (max if directions[k] == "max" else min)(means)
    head = "".join(f"<th>{html.escape(k)} {'↑' if directions[k] == 'max' else '↓'}</th>" for k in keys)
    body = "".join(
        f"<tr><th class='row'>{html.escape(label(r))}</th>"
        + "".join(cell(lb["cells"][r][task]["scores"][k], lb["cells"][r][task]["scores"][k]["mean"] == best[k])
                  for k in keys) + "</tr>" for r in rows)
    return (f"<h3>{html.escape(task)}</h3>"
            f"<table class='leaderboard'><thead><tr><th>model</th>{head}</tr></thead><tbody>{body}</tbody></table>")


def groups_table(lb: dict) -> str:
    groups = lb.get("groups") or {}
    if not groups:
        return ""
    head = "".join(f"<th>{html.escape(g)}<br><span class='metric'>{len(m)} tasks</span></th>"
                   for g, m in groups.items())
    best = {g: max((lb["group_cells"][r][g]["mean"] for r in lb["rows"] if g in lb["group_cells"].get(r, {})),
                   default=None) for g in groups}
    body = "".join(
        f"<tr><th class='row'>{html.escape(label(r))}</th>"
        + "".join(cell(lb["group_cells"].get(r, {}).get(g),
                       lb["group_cells"].get(r, {}).get(g, {}).get("mean") == best[g]) for g in groups)
        + "</tr>" for r in lb["rows"])
    members = "; ".join(f"<b>{html.escape(g)}</b>: {html.escape(', '.join(m))}" for g, m in groups.items())
    return (f"<h2>Task groups</h2><p class='meta'>Mean of each seed's headline scores over the group's tasks, then "
            f"mean ± std over seeds. {members}.</p>"
            f"<table class='leaderboard'><thead><tr><th>model</th>{head}</tr></thead><tbody>{body}</tbody></table>")


def subdomain_table(lb: dict, task: str) -> str:
    subs = lb["subdomains"].get(task) or {}
    if not subs:
        return ""
    names = sorted({s for row in subs.values() for s in row})
    best = {s: max(subs[r][s]["mean"] for r in subs if s in subs[r]) for s in names}
    head = "".join(f"<th>{html.escape(s.upper())}</th>" for s in names)
    body = "".join(
        f"<tr><th class='row'>{html.escape(label(r))}</th>"
        + "".join(cell(subs[r].get(s), s in subs[r] and subs[r][s]["mean"] == best[s]) for s in names) + "</tr>"
        for r in lb["rows"] if r in subs)
    return (f"<h3>{html.escape(task)}: per subdomain</h3>"
            f"<table class='leaderboard'><thead><tr><th>model</th>{head}</tr></thead><tbody>{body}</tbody></table>")


DECOMP_COLS = (("p_tfs", "P(TFS)"), ("tfs_deficit", "TFS deficit"), ("sfs_advantage", "SFS advantage"),
               ("risk_gap", "R(m) - R(T)"), ("tfs_accuracy", "TFS score"), ("sfs_accuracy", "SFS score"))


def decomposition_table(lb: dict, task: str) -> str:
    dec = (lb.get("decomposition") or {}).get(task) or {}
    if not dec:
        return ""
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in DECOMP_COLS)
    body = "".join(
        f"<tr><th class='row'>{html.escape(label(r))}</th>"
        + "".join(f"<td>{dec[r][k]['mean']:.3f} ± {dec[r][k]['std']:.3f}</td>" for k, _ in DECOMP_COLS) + "</tr>"
        for r in lb["rows"] if r in dec)
    return (f"<h3>{html.escape(task)}</h3>"
            f"<table class='leaderboard'><thead><tr><th>model</th>{head}</tr></thead><tbody>{body}</tbody></table>")


def bar_plot(lb: dict, task: str) -> str:
    rows = [r for r in lb["rows"] if task in lb["cells"][r]]
    return plots.bars([label(r) for r in rows], [lb["cells"][r][task]["mean"] for r in rows],
                      [lb["cells"][r][task]["std"] for r in rows], lb["metric"].get(task, "score"), task)


def schedule_section(lb: dict) -> str:
    """Selected checkpoint per stage and seed, for every method whose schedule is not constant."""
    figs = []
    for task, methods in (lb.get("schedules") or {}).items():
        for method, entry in methods.items():
            if len({c for r in entry["runs"] for c in r["schedule"]}) > 1 or any(
                    r["schedule"][0] != "best" for r in entry["runs"]):
                figs.append(f"<figure>{plots.schedule_svg(entry['runs'], f'{task}: {label(method)}')}</figure>")
    return "<div class='plots'>" + "".join(figs) + "</div>" if figs else "<p>No method here changes teacher.</p>"


def oracle_section(lb: dict) -> str:
    """Per task with oracle rows: each one-checkpoint schedule's mean score, the best of them (the ceiling), and
    every other distilled row's regret against it (mean ± std over seeds of the per-seed difference)."""
    parts = []
    for task, o in (lb.get("oracle") or {}).items():
        rows = "".join(f"<tr><td>{html.escape(label(r))}{' (best)' if r == o['best_row'] else ''}</td>"
                       f"<td>{m:.3f}</td><td></td></tr>" for r, m in o["means"].items())
        rows += "".join(f"<tr><td>{html.escape(label(r))}</td><td></td><td>{g['mean']:+.3f} ± {g['std']:.3f} "
                        f"<span class='n'>(n={g['n']})</span></td></tr>" for r, g in o["regret"].items())
        parts.append(f"<table><caption>{html.escape(task)}</caption><tr><th>row</th><th>mean</th>"
                     f"<th>regret vs {html.escape(label(o['best_row']))}</th></tr>{rows}</table>")
    return "".join(parts) or ("<p>No oracle rows in this run (config <code>oracles</code>: on in the smollm2 "
                              "profile and on the default profile's synthetic task).</p>")


def aw_section(lb: dict) -> str:
    """Per task and AW method: the weight histogram of the first stage (all seeds) and the mean weight per
    subdomain at every stage."""
    parts = []
    for task, methods in (lb.get("schedules") or {}).items():
        for method, entry in methods.items():
            if not entry.get("aw"):
                continue
            first = entry["aw"][0]
            hist = dict(first["hist"], bins=first["bins"], stage=0,
                        checkpoint="/".join(sorted(set(first["checkpoints"]))))
            fig = plots.histogram_svg(hist, f"{task}: {label(method)}, stage 1")
            subs = sorted({s for a in entry["aw"] for s in a["mean"]})
            head = "".join(f"<th>mean w, {html.escape(s.upper())}</th>" for s in subs)
            body = "".join(
                f"<tr><th class='row'>stage {a['stage'] + 1}</th><td>{html.escape(', '.join(a['checkpoints']))}</td>"
                + "".join(f"<td>{a['mean'][s]['mean']:.3f} ± {a['mean'][s]['std']:.3f}</td>" if s in a["mean"]
                          else "<td>–</td>" for s in subs) + "</tr>" for a in entry["aw"])
            table = (f"<table class='leaderboard'><thead><tr><th></th><th>teacher per seed</th>{head}</tr></thead>"
                     f"<tbody>{body}</tbody></table>")
            parts.append(f"<div class='aw'><figure>{fig}</figure>{table}</div>")
    return "".join(parts) or "<p>No method with adaptive weighting ran.</p>"


AXES = {"granularity": ("checkpoints N (= stages)", True), "lam": ("lambda (SCD selection weight)", False)}


def ablation_section(lb: dict) -> str:
    abl = lb.get("ablations") or {}
    if not abl:
        return ("<p>No ablations in this run: <code>snakemake --workflow-profile profiles/ablations</code> adds them "
                "(config/ablations.yaml).</p>")
    parts = []
    for axis, tasks in abl.items():
        xlabel, log2 = AXES.get(axis, (axis, False))
        for task, methods in tasks.items():
            series = {label(m): [(p["value"], p["score"]["mean"], p["score"]["std"]) for p in pts]
                      for m, pts in methods.items()}
            fig = plots.ablation_svg(series, xlabel, lb["metric"].get(task, "score"), f"{task}: {axis}", log2)
            rows = "".join(
                f"<tr><th class='row'>{html.escape(label(m))}</th><td>{p['value']:g}</td>"
                f"<td>{p['score']['mean']:.3f} ± {p['score']['std']:.3f} "
                f"<span class='n'>(n={p['score']['n']})</span></td>"
                f"<td>{p.get('seconds', float('nan')):.0f}</td>"
                + (f"<td>{(p.get('checkpoint_bytes') or 0) / 1e6:.1f}</td>" if axis == "granularity" else "")
                + f"<td><code>{html.escape(p['method'])}</code></td></tr>" for m, pts in methods.items() for p in pts)
            extra = "<th>teacher checkpoints kept (MB)</th>" if axis == "granularity" else ""
            table = (f"<table class='leaderboard'><thead><tr><th>method</th><th>{html.escape(xlabel)}</th>"
                     f"<th>score</th>"
                     f"<th>distillation wall time (s, mean over seeds)</th>{extra}<th>runs</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
            parts.append(f"<div class='aw'><figure>{fig}</figure>{table}</div>")
    return "".join(parts)


COMPUTE_COLS = (("train_seconds", "training (s)"), ("teacher_seconds", "teacher, live (s)"),
                ("shared", "teacher outputs, shared (s)"), ("peak_rss_bytes", "peak RSS (MB)"),
                ("disk_bytes", "disk (MB)"))


def _figure(key: str, value, std=None) -> str:
    if value is None:
        return "<td class='missing'>–</td>"
    scale = 1e6 if key.endswith("_bytes") else 1
    digits = 2 if scale > 1 and abs(value) < scale else 1  # a model of kilobytes is not 0.0 MB
    text = f"{value / scale:.{digits}f}"
    return f"<td>{text}" + (f" ± {std / scale:.{digits}f}" if std else "") + "</td>"


def compute_table(rows: list[str], figures: dict, shared: dict) -> str:
    """Rows with a figure: {row: {key: number or {mean, std}}}; `shared` = {row: seconds} of the shared teacher
    outputs each distilled row reads."""
    body = []
    for row in (r for r in rows if r in figures):
        tds = []
        for key, _ in COMPUTE_COLS:
            value = shared.get(row) if key == "shared" else figures[row].get(key)
            tds.append(_figure(key, value["mean"], value["std"]) if isinstance(value, dict) else _figure(key, value))
        body.append(f"<tr><th class='row'>{html.escape(label(row))}</th>{''.join(tds)}</tr>")
    head = "".join(f"<th>{t}</th>" for _, t in COMPUTE_COLS)
    return (f"<table class='leaderboard compute'><thead><tr><th>model</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def compute_section(lb: dict) -> str:
    """The compute table (leaderboard `compute`, from the jobs' own records): summed over tasks, then per task."""
    comp = lb.get("compute") or {}
    if not comp.get("tasks"):
        return "<p>The jobs of this run recorded no costs (results of older code).</p>"
    per_task, outputs = comp["tasks"], comp.get("teacher_outputs") or {}
    shared_total = {}
    for task, entry in outputs.items():
        for m in entry.get("methods", []):
            if "seconds" in entry:
                shared_total[m] = shared_total.get(m, 0.0) + entry["seconds"]["mean"]
    parts = [compute_table(lb["rows"], comp.get("total") or {}, shared_total)]
    tot = comp.get("teacher_outputs_total") or {}
    if tot:
        parts.append(f"<p class='meta'>Shared teacher outputs, summed over tasks (mean over seeds): "
                     f"{tot.get('seconds', 0):.1f} s, peak RSS {tot.get('peak_rss_bytes', 0) / 1e6:.1f} MB, "
                     f"{tot.get('disk_bytes', 0) / 1e6:.1f} MB of cache per seed while the distillations run.</p>")
    details = []
    for task in lb["tasks"]:
        if task not in per_task:
            continue
        entry = outputs.get(task) or {}
        shared = {m: entry["seconds"] for m in entry.get("methods", []) if "seconds" in entry}
        note = ""
        if entry:
            figs = ", ".join(f"{name} {entry[k]['mean'] / scale:.1f} ± {entry[k]['std'] / scale:.1f}{unit}"
                             for k, name, scale, unit in (("seconds", "", 1, " s"),
                                                          ("peak_rss_bytes", "peak RSS", 1e6, " MB"),
                                                          ("disk_bytes", "cache", 1e6, " MB")) if k in entry)
            note = (f"<p class='meta'>Teacher outputs job (once per seed, read by the {len(entry.get('methods', []))}"
                    f" distillations): {figs.strip()}.</p>")
        details.append(f"<h3>{html.escape(task)}</h3>{compute_table(lb['rows'], per_task[task], shared)}{note}")
    parts.append("<details><summary>Per task (mean ± std over seeds)</summary>" + "".join(details) + "</details>")
    return "".join(parts)


def run_list(lb: dict) -> str:
    items = []
    for row in lb["rows"]:
        for task in lb["tasks"]:
            c = lb["cells"][row].get(task)
            if c:
                ids = ", ".join(
                    f"seed {s}: <code>{html.escape(i)}</code>"
                    + (f" (training <code>{html.escape(t)}</code>)" if t else "")
                    for s, i, t in zip(c["seeds"], c["run_ids"], c.get("train_run_ids") or [None] * len(c["seeds"])))
                items.append(f"<li>{html.escape(label(row))} / {html.escape(task)}: {ids}</li>")
    return "<ul class='runs'>" + "".join(items) + "</ul>"


def conclusions_section(lb: dict) -> str:
    """What the run can conclude, in sentences made from the leaderboard's statistics (scd/stats.py), then per
    column a forest plot of every row's difference to TD with its 95% interval. A difference is called significant
    only when its Holm-adjusted p is below 0.05, and then its interval excludes zero; otherwise it is not a win."""
    comps, mdes = lb.get("comparisons") or {}, lb.get("mde") or {}
    omitted = (lb.get("statistics") or {}).get("omitted") or {}
    parts = []
    for col in [c for c in ["average", *lb["tasks"]] if comps.get(c)]:
        rows = [r for r, v in comps[col].items() if "vs_td" in v]
        if not rows:
            continue
        items, diffs, cis, marks = [], [], [], []
        for r in rows:
            c = comps[col][r]["vs_td"]
            lo, hi = c["ci95"]
            sig = c.get("p_holm", 1.0) < 0.05
            diffs.append(c["diff"]), cis.append((lo, hi)), marks.append(sig)
            gap = ((lb.get("gap_closed") or {}).get(col) or {}).get(r)
            closed = (f"; closes {gap['value']:.0%} of the student-SFT to teacher-SFT gap "
                      f"[{gap['ci95'][0]:.0%}, {gap['ci95'][1]:.0%}]") if gap and gap.get("meaningful") else ""
            name = f"<b>{html.escape(label(r))}</b>" if sig else html.escape(label(r))  # bold: significant only
            items.append(f"<li>{name} vs TD: {c['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}], "
                         f"{'significant' if sig else 'not significant'} (Holm-adjusted p {c.get('p_holm', 1.0):.3g})"
                         f"{closed}</li>")
        mde = (mdes.get(col) or {}).get("value")
        detect = f" Detectable here (80% power): {mde:.3f}." if mde is not None else ""
        forest = plots.forest_svg([label(r) for r in rows], diffs, cis, marks, f"{col}: row - TD, 95% interval",
                                  "score difference to TD")
        parts.append(f"<div class='conclusion'><h3>{html.escape(col)}</h3><p class='meta'>{detect}</p>"
                     f"<ul>{''.join(items)}</ul><figure class='forest'>{forest}</figure></div>")
    notes = "".join(f"<li>{html.escape(col)}: {html.escape(str(why))}</li>" for col, why in sorted(omitted.items()))
    body = "".join(parts) or "<p>This leaderboard carries no comparisons with intervals.</p>"
    return (f"<h2 id='conclusions'>Conclusions</h2><p class='meta'>Each row against TD: the paired difference over "
            f"seeds and test items, its 95% interval from a hierarchical bootstrap (seeds, then items), and the "
            f"Holm-adjusted p-value across the rows compared. Filled points: significant (p &lt; 0.05, the interval "
            f"excludes 0); hollow: not, which is no win whatever the means say.</p>{body}"
            + (f"<p class='meta'>Left out:</p><ul>{notes}</ul>" if notes else ""))


def trajectory_notice(lb: dict) -> str:
    """A warning listing the distillations whose teacher checkpoints were not distinct and in training order (T* at
    or before a checkpoint they read), each with the problem its job recorded."""
    items = [f"<li>{html.escape(task)} / {html.escape(label(method))} / seed {r['seed']}: "
             f"{html.escape(r['trajectory_problem'])}</li>"
             for task, methods in sorted((lb.get("schedules") or {}).items()) for method, entry in methods.items()
             for r in entry["runs"] if r.get("trajectory_problem")]
    if not items:
        return ""
    return ("<div class='warning' id='trajectory-problems'><b>Teacher trajectories.</b> These distillations chose "
            "among teacher checkpoints that were not distinct and in training order, so their schedule does not "
            f"follow the teacher's fine-tuning forwards:<ul>{''.join(items)}</ul></div>")


def data_notice(lb: dict) -> str:
    """A warning when a task ran on data files that differ from the pinned ones (the run said so on purpose with
    `allow_modified_data`): every file with its expected and found sha256."""
    modified = lb.get("data_modified") or {}
    if not modified:
        return ""
    code = lambda v: f"<code>{html.escape(str(v))}</code>"  # noqa: E731
    items = "".join(f"<li>{html.escape(task)}: {code(name)} sha256 {code(h.get('found'))}, pinned "
                    f"{code(h.get('expected'))}</li>"
                    for task, files in sorted(modified.items()) for name, h in sorted(files.items()))
    return ("<div class='warning' id='data-modified'><b>Modified data.</b> This run used task data that differs from "
            "the pinned files (allowed on purpose with <code>allow_modified_data</code>): its scores are not "
            f"comparable with runs on the pinned data.<ul>{items}</ul></div>")


def render(lb: dict) -> str:
    figures = "".join(f"<figure>{bar_plot(lb, t)}</figure>" for t in lb["tasks"])
    subs = "".join(subdomain_table(lb, t) for t in lb["tasks"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>scd-bench report ({html.escape(lb['profile'])})</title>
<style>{STYLE}</style></head><body>
<h1>scd-bench leaderboard</h1>
{data_notice(lb)}
{conclusions_section(lb)}
<p class="meta">Profile <b>{html.escape(lb['profile'])}</b>. Test-split scores, mean ± sample standard deviation over
seeds (n = number of seeds); best mean per column in bold. The average column averages each seed's task scores first.
Hover a cell for the per-seed values.</p>
{leaderboard_table(lb)}
{groups_table(lb)}
<h2>All metrics</h2>
<p class="meta">Tasks scored by more than one metric (the leaderboard shows the task's headline metric, the
first it declares; ↑ higher is better). Suffixes: <code>_norm</code>, the option of highest log-likelihood per
character (lm-evaluation-harness's acc_norm); <code>_options</code> / <code>_options_norm</code>, option scoring
reported beside a generation protocol (e.g. JMED-LLM's own under the paper profile); <code>_lenient</code>, NER
without counting predicted mentions absent from the sentence as false positives.</p>
{"".join(metrics_table(lb, t) for t in lb["tasks"]) or '<p>Every task in this run has one metric.</p>'}
<h2>Per subdomain</h2>
<p class="meta">Tasks whose samples carry a subdomain tag (TFS: teacher-favoured, SFS: student-favoured).</p>
{subs or '<p>No task in this run has subdomain tags.</p>'}
<h2>TFS/SFS decomposition</h2>
<p class="meta">Test samples split by which SFT model has the lower gold-answer loss (TFS: the teacher's, SFS: the
student's). Per model: its mean loss excess over the teacher on TFS (deficit) and its mean loss saving on SFS
(advantage); R(m) - R(T) = P(TFS) x deficit - P(SFS) x advantage, in mean gold NLL. Score columns: the task metric
on each part. Mean ± std over seeds.</p>
{"".join(decomposition_table(lb, t) for t in lb["tasks"])}
<h2>Scores by task</h2>
<div class="plots">{figures}</div>
<h2>Teacher schedules</h2>
<p class="meta">The teacher checkpoint each distillation stage learnt from (T* = the best teacher), per seed. CD walks
the trajectory in order; SCD picks argmin KL(p_T* || p_c) + lambda KL(p_S || p_c) on a probe set when each stage
starts (per-stage score matrices: MLflow artifact <code>schedule.json</code> of each run).</p>
{schedule_section(lb)}
{trajectory_notice(lb)}
<h2 id="oracle">Oracle schedules</h2>
<p class="meta">Rows that distil every stage from one checkpoint of the trajectory (<code>.ckpt&lt;k&gt;</code>; the
last is T*, TD's row), CD, and CD reversed (<code>.reversed</code>, T* first). The best mean among them is the ceiling
a schedule of single checkpoints reaches on the task; regret: that row's score minus the other row's, per seed, mean
± std over seeds (positive: below the ceiling). A regret within its spread is no evidence either way.</p>
{oracle_section(lb)}
<h2>Adaptive weights</h2>
<p class="meta">AW gives training row i the weight w_i = L_Ssft(i) / (L_Ssft(i) + L_c(i)) on the divergence and
1 - w_i on gold CE (w near 1: imitate the teacher; near 0: learn the label). Histogram: the first stage, all seeds
pooled, per subdomain; table: mean w per subdomain at each stage (mean ± std over seeds). Per-run histograms are
MLflow artifacts under <code>aw/</code>.</p>
{aw_section(lb)}
<h2>Ablations</h2>
<p class="meta">Score against the ablated setting (mean ± std over seeds); granularity keeps N of the teacher's saved
checkpoints and trains N stages with the same total epochs. Costs: wall time of the distillation job and the disk
the kept teacher checkpoints take.</p>
{ablation_section(lb)}
<h2>Compute</h2>
<p class="meta">What each row cost, as its jobs recorded it: summed over tasks, mean over seeds (per task below).
Training: the SFT or distillation loop with its validation. Teacher, live: the seconds a distillation ran the teacher
itself (on-policy samples, generated responses); the other teacher forwards are the shared teacher-outputs job of each
task and seed, one pass per checkpoint, read by every distillation of the seed: its seconds are repeated on each
distilled row but spent once. Peak RSS: the largest resident memory of the row's jobs (training, test evaluation).
Disk: the bytes the row's jobs left (models, the teacher's trajectory checkpoints for teacher-SFT, per-sample
records); the teacher-output cache is temporary, deleted once the distillations have read it. Process start-up is
not counted.</p>
{compute_section(lb)}
<h2>MLflow runs behind the numbers</h2>
<p class="meta">Evaluation (and training) run ids per seed: each is the tag <code>scd.run_id</code> of its MLflow
run (search <code>tags.scd.run_id = '&lt;id&gt;'</code>); browse them with
<code>mlflow ui --backend-store-uri sqlite:///{html.escape(lb.get('results_dir', 'results'))}/mlflow.db</code>.
Every run is tagged with task, method, seed, stage and profile, under the parent run of its workflow invocation.
Jobs write run records; the workflow logs them to MLflow when it ends (<code>scd tracking sync</code> does it
during a run).</p>
{run_list(lb)}
</body></html>
"""
