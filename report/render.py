"""Leaderboard JSON (scd/stages/aggregate.py) -> one self-contained HTML page; plots come from scd/plots.py as
inline SVG, so nothing loads from the network.

The page, in reading order: the stamp (commit, date, profile, machine), a table of contents, warnings, the
conclusions (sentences from the leaderboard's statistics, forest plots), the leaderboard with its significance
marks, then the details, each folded (report/details.py). Rows are shown under their display names
(report/names.py); cells and plots link to their runs in the MLflow UI (report/links.py).
"""
from __future__ import annotations

import html
from pathlib import Path

from report import details
from report.details import DETAILS, TEACHER_ROWS, label, mean_std, metrics_table, uninformative
from report.links import Links, experiment_id
from report.results_page import ALPHA, significant
from scd import plots
from scd.settings import Report

STYLE = (Path(__file__).parent / "style.css").read_text()
__all__ = ["render", "conclusions_section", "metrics_table"]


def significance(lb: dict, col: str, row: str) -> tuple[str, dict | None]:
    """The comparison a row's leaderboard mark rests on, as (reference row, {diff, ci95, p_holm}) or ("", None):
    against TD for every student row but TD itself (and against student-SFT for TD, or for every row when the run
    has no TD comparisons). Teacher rows and the fixed student rows are references, never marked."""
    comp = ((lb.get("comparisons") or {}).get(col) or {}).get(row) or {}
    if row in TEACHER_ROWS or not comp:
        return "", None
    key = "vs_td" if "vs_td" in comp else "vs_student_sft" if "vs_student_sft" in comp else None
    return (("td" if key == "vs_td" else "student_sft"), comp[key]) if key else ("", None)


def comparison_text(ref: str, c: dict) -> str:
    lo, hi = c["ci95"]
    return f"{c['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] vs {label(ref)}, Holm p {c.get('p_holm', 1.0):.3g}"


# -- top of the page --------------------------------------------------------------------------------------------
def stamp_block(lb: dict) -> str:
    s = lb.get("stamp") or {}
    commit = s.get("commit") or "not recorded"
    dirty = " (with uncommitted changes)" if s.get("dirty") == "true" else ""
    code = lambda v: f"<code>{html.escape(str(v))}</code>"  # noqa: E731
    items = [("profile", code(lb.get("profile", "?"))), ("commit", code(commit[:12]) + dirty),
             ("date", html.escape(s.get("date") or "not recorded")),
             ("machine", html.escape(s.get("machine") or "not recorded"))]
    note = "" if s else (" <span class='meta'>(a leaderboard of older code: rerun <code>scd aggregate</code> to "
                         "stamp it)</span>")
    return ("<header class='stamp'>" + " · ".join(f"<span><b>{k}</b> {v}</span>" for k, v in items) + note
            + "</header>")


def toc(lb: dict) -> str:
    parts = "".join(f"<li><a href='#{key}'>{html.escape(title)}</a></li>" for key, title, _, _ in DETAILS)
    return ("<nav class='toc'><b>Contents</b><ol><li><a href='#conclusions'>Conclusions</a></li>"
            "<li><a href='#leaderboard'>Leaderboard</a></li>"
            f"<li><a href='#details'>Details</a> (folded: click a title to open it)<ol>{parts}</ol></li></ol></nav>")


def flat_notice(lb: dict) -> str:
    flat = uninformative(lb)
    if not flat:
        return ""
    items = "".join(f"<li>{html.escape(t)}: every trained student row (student-SFT and the distilled ones) scores "
                    f"{m['rate']:.3f}, the share of the test split's most frequent answer "
                    f"({html.escape(str(m['label']))}, {m['n']} items)</li>" for t, m in flat.items())
    return ("<div class='notice' id='not-informative'><b>Not informative at this model size.</b> On these tasks "
            "every trained student row answers like a constant majority-class guess, so their scores tie by "
            f"construction and say nothing about the methods:<ul>{items}</ul>The average over tasks still counts "
            "them.</div>")


# -- conclusions ------------------------------------------------------------------------------------------------
def headline(lb: dict, cols: list[str]) -> str:
    """One paragraph: which rows differ significantly from TD, on which columns."""
    flat = uninformative(lb)
    found = []
    for col in cols:
        for row, comp in ((lb.get("comparisons") or {}).get(col) or {}).items():
            c = comp.get("vs_td")
            if col not in flat and significant(c):
                found.append(f"{html.escape(label(row))} on {html.escape(col)} "
                             f"({'above' if c['diff'] > 0 else 'below'} TD: {c['diff']:+.3f} "
                             f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}])")
    if not found:
        return ("<p class='lead'>No row differs from TD beyond its 95% interval (Holm-adjusted) on any column: on "
                "this run, no method is shown to beat vanilla KD, nor to fall below it.</p>")
    return f"<p class='lead'>Significant differences from TD: {'; '.join(found)}. Every other row: no evidence.</p>"


def column_block(lb: dict, col: str, links: Links) -> str:
    comps, mdes = lb["comparisons"], lb.get("mde") or {}
    rows = [r for r in lb["rows"] if "vs_td" in comps[col].get(r, {})]  # in leaderboard order
    if not rows:
        return ""
    mde = (mdes.get(col) or {}).get("value")
    detect = f"Detectable here (80% power): {mde:.3f}." if mde is not None else ""
    flat = uninformative(lb).get(col)
    if flat:
        return (f"<div class='conclusion'><div><h3>{html.escape(col)}</h3><p>Not "
                f"informative at this model size: every trained student row scores the majority-class rate "
                f"{flat['rate']:.3f}, so every difference is zero by construction.</p></div></div>")
    items, diffs, cis, marks = [], [], [], []
    for r in rows:
        c = comps[col][r]["vs_td"]
        lo, hi = c["ci95"]
        sig = significant(c)
        diffs.append(c["diff"]), cis.append((lo, hi)), marks.append(sig)
        gap = ((lb.get("gap_closed") or {}).get(col) or {}).get(r)
        closed = (f"; closes {gap['value']:.0%} of the student-SFT to teacher-SFT gap "
                  f"[{gap['ci95'][0]:.0%}, {gap['ci95'][1]:.0%}]") if gap and gap.get("meaningful") else ""
        name = f"<b>{html.escape(label(r))}</b>" if sig else html.escape(label(r))  # bold: significant only
        items.append(f"<li>{name} vs TD: {c['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}], "
                     f"{'significant' if sig else 'not significant'} (Holm-adjusted p {c.get('p_holm', 1.0):.3g})"
                     f"{closed}</li>")
    forest = plots.forest_svg([label(r) for r in rows], diffs, cis, marks, f"{col}: row - TD",
                              "score difference to TD")
    task = None if col == "average" else col
    return (f"<div class='conclusion'><figure class='forest'>"
            f"{links.a(links.runs(task=task), forest, f'the evaluation runs of {col}')}</figure>"
            f"<div><h3>{html.escape(col)}</h3><p class='meta'>{detect}</p><ul>{''.join(items)}</ul></div></div>")


def rank_block(lb: dict, links: Links | None = None) -> str:
    """Average ranks over tasks, Friedman's test, and the critical-difference diagram when the leaderboard has one
    (`critical_difference`: {cd, alpha, n, cliques}); the diagram links to the evaluations it ranks."""
    links = links or Links()
    ranks, fried, cd = lb.get("ranks") or {}, lb.get("friedman") or {}, lb.get("critical_difference")
    if not ranks:
        return ""
    order = sorted(ranks, key=lambda r: ranks[r])
    text = ", ".join(f"{html.escape(label(r))} {ranks[r]:.2f}" for r in order)
    test = (f"Friedman's test over {fried.get('n_tasks')} tasks: p = {fried['p']:.3g}." if fried.get("p") is not None
            else f"Friedman's test: not computed ({html.escape(str(fried.get('reason', 'no ranks')))}).")
    fig = ""
    if cd and cd.get("cd") is not None:
        cliques = "; ".join("{" + ", ".join(html.escape(label(r)) for r in c) + "}" for c in cd.get("cliques", []))
        fig = (f"<p class='meta'>Critical difference {cd['cd']:.2f} (alpha {cd.get('alpha', ALPHA)}, "
               f"{cd.get('n')} tasks): rows whose average ranks differ by less do not differ; groups that do not "
               f"separate: {cliques or 'none'}.</p>")
        svg = plots.cd_diagram_svg({label(r): ranks[r] for r in order}, cd["cd"],
                                   [[label(r) for r in c] for c in cd.get("cliques") or []],
                                   "Average rank across tasks (critical difference, Nemenyi)")
        fig += f"<figure>{links.a(links.runs(), svg, 'the test evaluations ranked here')}</figure>"
    return (f"<h3 id='ranks'>Ranks across tasks</h3><p class='meta'>Average rank per distilled row (1 = best on a "
            f"task, ties share): {text}. {test}</p>{fig}")


def conclusions_section(lb: dict, links: Links | None = None) -> str:
    """What the run can conclude, in sentences made from the leaderboard's statistics (scd/stats.py), then per
    column a forest plot of every row's difference to TD with its 95% interval. A difference is called significant
    only when its Holm-adjusted p is below 0.05 and its interval excludes zero; otherwise it is not a win."""
    links = links or Links()
    comps = lb.get("comparisons") or {}
    omitted = (lb.get("statistics") or {}).get("omitted") or {}
    cols = [c for c in ["average", *lb["tasks"]] if comps.get(c)]
    blocks = [b for b in (column_block(lb, c, links) for c in cols) if b]
    notes = "".join(f"<li>{html.escape(col)}: {html.escape(str(why))}</li>" for col, why in sorted(omitted.items()))
    one_seed = sorted(c for c, n in ((lb.get("statistics") or {}).get("seeds") or {}).items() if n == 1)
    if blocks and one_seed:  # no training variance in these intervals: say so where they are read
        blocks.insert(0, f"<p class='notice'>One seed on {html.escape(', '.join(one_seed))}: the intervals there cover "
                         "the test items only, not the variance of training again with another seed.</p>")
    body = (headline(lb, cols) + "".join(blocks)) if blocks else \
        "<p>This leaderboard carries no comparisons with intervals.</p>"
    return (f"<h2 id='conclusions'>Conclusions</h2><p class='meta'>Each row against TD: the paired difference over "
            f"seeds and test items, its 95% interval from a hierarchical bootstrap (seeds, then items), and the "
            f"Holm-adjusted p-value across the rows compared. Filled points: significant (p &lt; 0.05, the interval "
            f"excludes 0); hollow: not, which is no win whatever the means say. Click a plot for its MLflow runs."
            f"</p>{body}{rank_block(lb, links)}" + (f"<p class='meta'>Left out:</p><ul>{notes}</ul>" if notes else ""))


# -- the leaderboard --------------------------------------------------------------------------------------------
def typical_n(lb: dict) -> int | None:
    ns = [c["n"] for row in lb["rows"] for c in lb["cells"][row].values()]
    return max(set(ns), key=ns.count) if ns else None


def leaderboard_cell(lb: dict, row: str, col: str, links: Links, n: int | None) -> str:
    c = lb["cells"][row].get(col)
    if not c:
        return "<td class='missing'>–</td>"
    flat = col in uninformative(lb)
    ref, comp = significance(lb, col, row)
    sig = significant(comp) and not flat
    text = mean_std(c) + (f" <span class='n'>(n={c['n']})</span>" if c["n"] != n else "")
    if sig:
        text = f"<b>{text} {'▲' if comp['diff'] > 0 else '▼'}</b>"
    title = "per seed: " + ", ".join(f"{v:.3f}" for v in c["values"])
    if comp:
        title += f"; {comparison_text(ref, comp)}"
    task = None if col == "average" else col
    link = links.a(links.runs(task=task, method=row), text, title)
    kind = ("sig up" if comp["diff"] > 0 else "sig down") if sig else "flat" if flat else ""
    return f"<td class='{kind}'>{link}</td>"


def leaderboard_section(lb: dict, links: Links) -> str:
    cols = lb["tasks"] + ["average"]
    flat = uninformative(lb)
    head = "".join(f"<th>{html.escape(c)}<br><span class='metric'>{html.escape(lb['metric'].get(c, 'mean'))}</span>"
                   + ("<br><span class='flag'>not informative</span>" if c in flat else "") + "</th>" for c in cols)
    n = typical_n(lb)
    body = "".join(
        f"<tr{' class=reference' if row in TEACHER_ROWS else ''}><th class='row'>"
        f"{links.a(links.runs(method=row), html.escape(label(row)), f'every evaluation run of {row}')}</th>"
        + "".join(leaderboard_cell(lb, row, c, links, n) for c in cols) + "</tr>" for row in lb["rows"])
    has_td = any("vs_td" in v for col in (lb.get("comparisons") or {}).values() for v in col.values())
    legend = (
        f"Test-split scores, mean ± sample standard deviation over seeds ({n} seed{'s' * (n != 1)} per cell unless a "
        f"cell says "
        f"n=). The average column averages each seed's task scores first. <b>Bold</b> with ▲ / ▼: the row lies "
        f"significantly above / below "
        + ("TD (Holm-adjusted p &lt; 0.05 and a 95% interval that excludes 0); TD's own row is marked against "
           "student-SFT, the model distillation starts from. " if has_td else
           "student-SFT (no TD row: the model distillation starts from is the reference). ")
        + "Nothing else is bold: the best mean is no win when its interval includes zero. Teacher rows (grey) are "
          "references, not contenders, and never marked; student-SFT and the zero-shot rows are references too. "
          "Hover a cell for its per-seed values and its difference with interval; click it for its MLflow runs."
        + (" A column flagged <span class='flag'>not informative</span>: every trained student row scores the majority-"
           "class rate." if flat else ""))
    marks = "" if lb.get("comparisons") else (" <b>This leaderboard has no statistics (older code): nothing is "
                                               "marked.</b>")
    return (f"<h2 id='leaderboard'>Leaderboard</h2><p class='meta legend'>{legend}{marks}</p>"
            f"<div class='wide'><table class='leaderboard'><thead><tr><th>model</th>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


# -- the page ---------------------------------------------------------------------------------------------------
def render(lb: dict, ui_url: str | None = None, experiment: str | None = None) -> str:
    """The report of leaderboard `lb`. `ui_url`: the MLflow UI the links open (config `report.ui_url`, default
    scd/settings.py Report); `experiment`: its experiment id, else read from the results directory's store."""
    if experiment is None:
        experiment = experiment_id(lb.get("results_dir", "results"))
    links = Links(ui_url or Report().ui_url, experiment, lb.get("profile"))
    folded = "".join(
        f"<details><summary><h2>{html.escape(title)}</h2></summary><div id=\"{key}\"><p class='meta'>{intro}</p>"
        f"{body(lb, links)}</div></details>" for key, title, intro, body in DETAILS)  # a link to #key opens it
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>scd-bench report ({html.escape(lb['profile'])})</title>
<style>{STYLE}</style></head><body>
<h1>scd-bench report</h1>
{stamp_block(lb)}
{toc(lb)}
{details.data_notice(lb)}
{flat_notice(lb)}
<section>{conclusions_section(lb, links)}</section>
<section>{leaderboard_section(lb, links)}</section>
<section id="details"><h2 class="details">Details</h2>
{folded}
</section>
</body></html>
"""
