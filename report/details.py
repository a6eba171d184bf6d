"""The report's folded details: one function per section, each `(lb, links) -> HTML`, listed in DETAILS in page
order. No bold anywhere here: significance is marked on the leaderboard only (report/render.py)."""
from __future__ import annotations

import html

from report.links import Links
from report.names import display as label
from scd import plots

TEACHER_ROWS = ("teacher_sft", "teacher_zero_shot")
CONSTANT_METRICS = ("accuracy", "exact_match")  # a constant answer scores the majority rate under these


def uninformative(lb: dict) -> dict[str, dict]:
    """Tasks on which every trained student row (student-SFT and the distilled rows; not the teacher's, nor the
    zero-shot ones) scores the test split's majority-class rate on every seed (leaderboard `majority`), under a
    metric where that is what a constant answer scores: {task: majority}."""
    out = {}
    for task, maj in (lb.get("majority") or {}).items():
        if lb["metric"].get(task) not in CONSTANT_METRICS or not maj.get("n"):
            continue
        cells = [lb["cells"][r][task] for r in lb["rows"] if r not in TEACHER_ROWS and not r.endswith("_zero_shot")
                 and task in lb["cells"][r]]
        if cells and all(abs(v - maj["rate"]) < 0.5 / maj["n"] for c in cells for v in c["values"]):
            out[task] = maj
    return out


def mean_std(c: dict) -> str:
    """mean ± std over seeds; the mean alone where one seed made it (one value has no spread)."""
    return f"{c['mean']:.3f}" + (f" ± {c['std']:.3f}" if c.get("n", len(c.get("values", []))) > 1 else "")


def cell(c: dict | None, links: Links | None = None, filter_: str | None = None) -> str:
    """mean ± std (n); per-seed values on hover; a link to the runs `filter_` finds."""
    if not c:
        return "<td class='missing'>–</td>"
    text = f"{mean_std(c)} <span class='n'>(n={c['n']})</span>"
    title = "per seed: " + ", ".join(f"{v:.3f}" for v in c["values"])
    if links is not None and filter_:
        return f"<td>{links.a(filter_, text, title)}</td>"
    return f"<td title='{html.escape(title)}'>{text}</td>"


def table(head: str, body: str, cls: str = "leaderboard") -> str:
    return (f"<div class='wide'><table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            "</div>")


def row_head(row: str) -> str:
    return f"<th class='row'>{html.escape(label(row))}</th>"


def metrics_table(lb: dict, task: str, links: Links | None = None) -> str:
    """Every metric of a task with more than one (e.g. accuracy and kappa)."""
    links = links or Links()
    keys = list((lb.get("metrics") or {}).get(task) or [])
    if len(keys) < 2:
        return ""
    directions = lb["metrics"][task]
    head = "<th>model</th>" + "".join(f"<th>{html.escape(k)} {'↑' if directions[k] == 'max' else '↓'}</th>"
                                      for k in keys)
    body = "".join(f"<tr>{row_head(r)}" + "".join(
        cell(lb["cells"][r][task]["scores"][k], links, links.runs(task=task, method=r)) for k in keys) + "</tr>"
        for r in lb["rows"] if task in lb["cells"][r])
    return f"<div><h3>{html.escape(task)}</h3>{table(head, body)}</div>"


def metrics_section(lb: dict, links: Links) -> str:
    tables = "".join(metrics_table(lb, t, links) for t in lb["tasks"])
    return f"<div class='side'>{tables}</div>" if tables else "<p>Every task in this run has one metric.</p>"


def groups_section(lb: dict, links: Links) -> str:
    groups = lb.get("groups") or {}
    if not groups:
        return "<p>No task group has two of this run's tasks.</p>"
    head = "<th>model</th>" + "".join(f"<th>{html.escape(g)}<br><span class='metric'>{len(m)} tasks</span></th>"
                                      for g, m in groups.items())
    body = "".join(f"<tr>{row_head(r)}" + "".join(cell(lb['group_cells'].get(r, {}).get(g), links,
                                                        links.runs(method=r)) for g in groups) + "</tr>"
                   for r in lb["rows"])
    members = "; ".join(f"{html.escape(g)}: {html.escape(', '.join(m))}" for g, m in groups.items())
    return f"<p class='meta'>{members}.</p>{table(head, body)}"


def subdomain_section(lb: dict, links: Links) -> str:
    parts = []
    for task in lb["tasks"]:
        subs = lb["subdomains"].get(task) or {}
        if not subs:
            continue
        names = sorted({s for row in subs.values() for s in row})
        head = "<th>model</th>" + "".join(f"<th>{html.escape(s.upper())}</th>" for s in names)
        body = "".join(f"<tr>{row_head(r)}" + "".join(cell(subs[r].get(s), links, links.runs(task=task, method=r))
                                                      for s in names) + "</tr>" for r in lb["rows"] if r in subs)
        parts.append(f"<div><h3>{html.escape(task)}: per subdomain</h3>{table(head, body)}</div>")
    return ("<div class='side'>" + "".join(parts) + "</div>" if parts else
            "<p>No task in this run has subdomain tags.</p>")


DECOMP_COLS = (("p_tfs", "P(TFS)"), ("tfs_deficit", "TFS deficit"), ("sfs_advantage", "SFS advantage"),
               ("risk_gap", "R(m) - R(T)"), ("tfs_accuracy", "TFS score"), ("sfs_accuracy", "SFS score"))


def decomposition_section(lb: dict, links: Links) -> str:
    parts = []
    for task in lb["tasks"]:
        dec = (lb.get("decomposition") or {}).get(task) or {}
        if not dec:
            continue
        head = "<th>model</th>" + "".join(f"<th>{html.escape(t)}</th>" for _, t in DECOMP_COLS)
        body = "".join(f"<tr>{row_head(r)}" + "".join(f"<td>{dec[r][k]['mean']:.3f} ± {dec[r][k]['std']:.3f}</td>"
                                                      for k, _ in DECOMP_COLS) + "</tr>"
                       for r in lb["rows"] if r in dec)
        parts.append(f"<h3>{html.escape(task)}</h3>{table(head, body)}")
    return "".join(parts) or "<p>No per-sample records with the SFT models' gold losses in this run.</p>"


def bar_plot(lb: dict, task: str) -> str:
    rows = [r for r in lb["rows"] if task in lb["cells"][r]]
    return plots.bars([label(r) for r in rows], [lb["cells"][r][task]["mean"] for r in rows],
                      [lb["cells"][r][task]["std"] for r in rows], lb["metric"].get(task, "score"), task)


def plots_section(lb: dict, links: Links) -> str:
    return "<div class='plots'>" + "".join(
        f"<figure>{links.a(links.runs(task=t), bar_plot(lb, t), f'the evaluation runs of {t}')}</figure>"
        for t in lb["tasks"]) + "</div>"


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


def schedule_section(lb: dict, links: Links) -> str:
    """Selected checkpoint per stage and seed, for every method whose schedule is not constant."""
    figs = []
    for task, methods in (lb.get("schedules") or {}).items():
        for method, entry in methods.items():
            if len({c for r in entry["runs"] for c in r["schedule"]}) > 1 or any(
                    r["schedule"][0] != "best" for r in entry["runs"]):
                svg = plots.schedule_svg(entry["runs"], f"{task}: {label(method)}")
                figs.append(f"<figure>{links.a(links.runs('distill', task=task, method=method), svg)}</figure>")
    return (("<div class='plots'>" + "".join(figs) + "</div>" if figs else "<p>No method here changes teacher.</p>")
            + trajectory_notice(lb))


def oracle_section(lb: dict, links: Links) -> str:
    """Per task with oracle rows: each one-checkpoint schedule's mean score, the best of them (the ceiling), and
    every other distilled row's regret against it (mean ± std over seeds of the per-seed difference)."""
    parts = []
    for task, o in (lb.get("oracle") or {}).items():
        rows = "".join(f"<tr><th class='row'>{html.escape(label(r))}{' (best)' if r == o['best_row'] else ''}</th>"
                       f"<td>{links.a(links.runs(task=task, method=r), f'{m:.3f}')}</td><td></td></tr>"
                       for r, m in o["means"].items())
        rows += "".join(f"<tr>{row_head(r)}<td></td><td>{g['mean']:+.3f} ± {g['std']:.3f} "
                        f"<span class='n'>(n={g['n']})</span></td></tr>" for r, g in o["regret"].items())
        head = f"<th>row</th><th>mean</th><th>regret vs {html.escape(label(o['best_row']))}</th>"
        parts.append(f"<div><h3>{html.escape(task)}</h3>{table(head, rows)}</div>")
    return ("<div class='side'>" + "".join(parts) + "</div>" if parts else
            "<p>No oracle rows in this run (config <code>oracles</code>: on in the smollm2 profile and on the default "
            "profile's synthetic task).</p>")


def aw_section(lb: dict, links: Links) -> str:
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
            head = "<th></th><th>teacher per seed</th>" + "".join(f"<th>mean w, {html.escape(s.upper())}</th>"
                                                                  for s in subs)
            body = "".join(
                f"<tr><th class='row'>stage {a['stage'] + 1}</th><td>{html.escape(', '.join(a['checkpoints']))}</td>"
                + "".join(f"<td>{a['mean'][s]['mean']:.3f} ± {a['mean'][s]['std']:.3f}</td>" if s in a["mean"]
                          else "<td>–</td>" for s in subs) + "</tr>" for a in entry["aw"])
            parts.append(f"<div class='aw'><figure>{links.a(links.runs('distill', task=task, method=method), fig)}"
                         f"</figure>{table(head, body)}</div>")
    return "".join(parts) or "<p>No method with adaptive weighting ran.</p>"


AXES = {"granularity": ("checkpoints N (= stages)", True), "lam": ("lambda (SCD selection weight)", False)}


def ablation_section(lb: dict, links: Links) -> str:
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
                f"<tr>{row_head(m)}<td>{p['value']:g}</td>"
                f"<td>{links.a(links.runs(task=task, method=p['method']), format(p['score']['mean'], '.3f'))}"
                f" ± {p['score']['std']:.3f} <span class='n'>(n={p['score']['n']})</span></td>"
                f"<td>{p.get('seconds', float('nan')):.0f}</td>"
                + (f"<td>{(p.get('checkpoint_bytes') or 0) / 1e6:.1f}</td>" if axis == "granularity" else "")
                + f"<td><code>{html.escape(p['method'])}</code></td></tr>" for m, pts in methods.items() for p in pts)
            extra = "<th>teacher checkpoints kept (MB)</th>" if axis == "granularity" else ""
            head = (f"<th>method</th><th>{html.escape(xlabel)}</th><th>score</th>"
                    f"<th>distillation wall time (s, mean over seeds)</th>{extra}<th>runs</th>")
            parts.append(f"<div class='aw'><figure>{links.a(links.runs(task=task), fig)}</figure>"
                         f"{table(head, rows)}</div>")
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
        body.append(f"<tr>{row_head(row)}{''.join(tds)}</tr>")
    head = "<th>model</th>" + "".join(f"<th>{t}</th>" for _, t in COMPUTE_COLS)
    return table(head, "".join(body), "leaderboard compute")


def compute_section(lb: dict, links: Links) -> str:
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
    per = []
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
        per.append(f"<h3>{html.escape(task)}</h3>{compute_table(lb['rows'], per_task[task], shared)}{note}")
    parts.append("<details><summary>Per task (mean ± std over seeds)</summary>" + "".join(per) + "</details>")
    return "".join(parts)


def runs_section(lb: dict, links: Links) -> str:
    """Per row and task, a link per seed to its evaluation run (and its training run)."""
    head = "<th>model</th>" + "".join(f"<th>{html.escape(t)}</th>" for t in lb["tasks"])
    body = []
    for row in lb["rows"]:
        tds = []
        for task in lb["tasks"]:
            c = lb["cells"][row].get(task)
            if not c:
                tds.append("<td class='missing'>–</td>")
                continue
            seeds = " ".join(
                links.a(links.run(i), f"seed {s}", f"evaluation run {i}")
                + (f" ({links.a(links.run(t), 'training', f'training run {t}')})" if t else "")
                for s, i, t in zip(c["seeds"], c["run_ids"], c.get("train_run_ids") or [None] * len(c["seeds"])))
            tds.append(f"<td class='runs'>{seeds}</td>")
        body.append(f"<tr>{row_head(row)}{''.join(tds)}</tr>")
    store = html.escape(lb.get("results_dir", "results"))
    return (f"<p class='meta'>Open the UI with <code>mlflow ui --backend-store-uri sqlite:///{store}/mlflow.db</code>"
            f" (its address, config <code>report.ui_url</code>: <code>{html.escape(links.ui_url)}</code>)."
            + ("" if links.experiment is not None else " No MLflow experiment was found in the results directory's "
               "store (mlflow.db): the links open the UI's experiment list; each link's title gives the search to "
               "paste.") + "</p>"
            + table(head, "".join(body)))


DETAILS = (
    ("all-metrics", "All metrics",
     "Tasks scored by more than one metric (the leaderboard shows the task's headline metric, the first it declares; "
     "↑ higher is better). Suffixes: <code>_norm</code>, the option of highest log-likelihood per character "
     "(lm-evaluation-harness's acc_norm); <code>_options</code> / <code>_options_norm</code>, option scoring reported "
     "beside a generation protocol; <code>_lenient</code>, NER without counting predicted mentions absent from the "
     "sentence as false positives.", metrics_section),
    ("groups", "Task groups", "Mean of each seed's headline scores over the group's tasks, then mean ± std over "
     "seeds.", groups_section),
    ("subdomains", "Per subdomain", "Tasks whose samples carry a subdomain tag (TFS: teacher-favoured, SFS: "
     "student-favoured).", subdomain_section),
    ("decomposition", "TFS/SFS decomposition",
     "Test samples split by which SFT model has the lower gold-answer loss (TFS: the teacher's, SFS: the student's). "
     "Per model: its mean loss excess over the teacher on TFS (deficit) and its mean loss saving on SFS (advantage); "
     "R(m) - R(T) = P(TFS) x deficit - P(SFS) x advantage, in mean gold NLL. Score columns: the task metric on each "
     "part. Mean ± std over seeds.", decomposition_section),
    ("scores", "Scores by task", "Mean ± std over seeds per row; click a plot for the task's runs.", plots_section),
    ("schedules", "Teacher schedules",
     "The teacher checkpoint each distillation stage learnt from (T* = the best teacher), per seed. CD walks the "
     "trajectory in order; SCD picks argmin KL(p_T* || p_c) + lambda KL(p_S || p_c) on a probe set when each stage "
     "starts (per-stage score matrices: MLflow artifact <code>schedule.json</code> of each run).", schedule_section),
    ("oracle", "Oracle schedules",
     "Rows that distil every stage from one checkpoint of the trajectory (<code>.ckpt&lt;k&gt;</code>; the last is "
     "T*, TD's row), CD, and CD reversed (<code>.reversed</code>, T* first). The best mean among them is the ceiling "
     "a schedule of single checkpoints reaches on the task; regret: that row's score minus the other row's, per seed, "
     "mean ± std over seeds (positive: below the ceiling). A regret within its spread is no evidence either way.",
     oracle_section),
    ("weights", "Adaptive weights",
     "AW gives training row i the weight w_i = L_Ssft(i) / (L_Ssft(i) + L_c(i)) on the divergence and 1 - w_i on gold "
     "CE (w near 1: imitate the teacher; near 0: learn the label). Histogram: the first stage, all seeds pooled, per "
     "subdomain; table: mean w per subdomain at each stage (mean ± std over seeds). Per-run histograms are MLflow "
     "artifacts under <code>aw/</code>.", aw_section),
    ("ablations", "Ablations",
     "Score against the ablated setting (mean ± std over seeds); granularity keeps N of the teacher's saved "
     "checkpoints and trains N stages with the same total epochs. Costs: wall time of the distillation job and the "
     "disk the kept teacher checkpoints take.", ablation_section),
    ("compute", "Compute",
     "What each row cost, as its jobs recorded it: summed over tasks, mean over seeds (per task below). Training: the "
     "SFT or distillation loop with its validation. Teacher, live: the seconds a distillation ran the teacher itself "
     "(on-policy samples, generated responses); the other teacher forwards are the shared teacher-outputs job of each "
     "task and seed, one pass per checkpoint, read by every distillation of the seed: its seconds are repeated on "
     "each distilled row but spent once. Peak RSS: the largest resident memory of the row's jobs (training, test "
     "evaluation). Disk: the bytes the row's jobs left (models, the teacher's trajectory checkpoints for "
     "teacher-SFT, per-sample records); the teacher-output cache is temporary, deleted once the distillations have "
     "read it. Process start-up is not counted.", compute_section),
    ("runs", "MLflow runs",
     "Each seed's evaluation (and training) run. A run carries its summary's id as the tag <code>scd.run_id</code>, "
     "and task, method, seed, stage and profile, under the parent run of its workflow invocation. Jobs write run "
     "records; the workflow logs them to MLflow when it ends (<code>scd tracking sync</code> does it during a "
     "run).", runs_section),
)


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
