"""Leaderboard JSON (scd/aggregate.py) -> one self-contained HTML page.

Plots are matplotlib SVG inlined in the page: nothing loads from the network, and with a fixed hash salt and no
date metadata the same numbers give the same bytes.
"""
from __future__ import annotations

import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams["svg.hashsalt"] = "scd-bench"
STYLE = (Path(__file__).parent / "style.css").read_text()
LABELS = {"teacher_sft": "teacher-SFT", "student_sft": "student-SFT"}


def label(row: str) -> str:
    return LABELS.get(row, row.upper() if len(row) <= 4 else row)


def cell(c: dict | None, best: bool) -> str:
    if not c:
        return "<td class='missing'>–</td>"
    text = f"{c['mean']:.3f} ± {c['std']:.3f} <span class='n'>(n={c['n']})</span>"
    title = html.escape("per seed: " + ", ".join(f"{v:.3f}" for v in c["values"]))
    return f"<td class='{'best' if best else ''}' title='{title}'>{'<b>' + text + '</b>' if best else text}</td>"


def leaderboard_table(lb: dict) -> str:
    cols = lb["tasks"] + ["average"]
    head = "".join(f"<th>{html.escape(c)}<br><span class='metric'>{html.escape(lb['metric'].get(c, 'mean'))}</span></th>"
                   for c in cols)
    body = []
    for row in lb["rows"]:
        cells = "".join(cell(lb["cells"][row].get(c), row in lb["best"].get(c, [])) for c in cols)
        body.append(f"<tr><th class='row'>{html.escape(label(row))}</th>{cells}</tr>")
    return f"<table class='leaderboard'><thead><tr><th>model</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


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
    means = [lb["cells"][r][task]["mean"] for r in rows]
    stds = [lb["cells"][r][task]["std"] for r in rows]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(rows), 2.6))
    ax.bar(range(len(rows)), means, yerr=stds, capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(rows)), [label(r) for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(lb["metric"].get(task, "score"), fontsize=8)
    ax.set_title(task, fontsize=9)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def run_list(lb: dict) -> str:
    items = []
    for row in lb["rows"]:
        for task in lb["tasks"]:
            c = lb["cells"][row].get(task)
            if c:
                ids = ", ".join(
                    f"seed {s}: <code>{html.escape(i)}</code>" + (f" (training <code>{html.escape(t)}</code>)" if t else "")
                    for s, i, t in zip(c["seeds"], c["run_ids"], c.get("train_run_ids") or [None] * len(c["seeds"])))
                items.append(f"<li>{html.escape(label(row))} / {html.escape(task)}: {ids}</li>")
    return "<ul class='runs'>" + "".join(items) + "</ul>"


def render(lb: dict) -> str:
    plots = "".join(f"<figure>{bar_plot(lb, t)}</figure>" for t in lb["tasks"])
    subs = "".join(subdomain_table(lb, t) for t in lb["tasks"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>scd-bench report ({html.escape(lb['profile'])})</title>
<style>{STYLE}</style></head><body>
<h1>scd-bench leaderboard</h1>
<p class="meta">Profile <b>{html.escape(lb['profile'])}</b>. Test-split scores, mean ± sample standard deviation over
seeds (n = number of seeds); best mean per column in bold. The average column averages each seed's task scores first.
Hover a cell for the per-seed values.</p>
{leaderboard_table(lb)}
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
<div class="plots">{plots}</div>
<h2>MLflow runs behind the numbers</h2>
<p class="meta">Evaluation (and training) run ids per seed; browse them with
<code>mlflow ui --backend-store-uri sqlite:///{html.escape(lb.get('results_dir', 'results'))}/mlflow.db</code>.
Every run is tagged with task, method, seed, stage and profile, under the parent run of its workflow invocation.</p>
{run_list(lb)}
</body></html>
"""
