"""Every plot of the report (and the AW histograms logged to MLflow), as inline SVG strings.

matplotlib with the Agg backend, a fixed hash salt and no date metadata: nothing loads from the network, and the
same numbers give the same bytes.
"""
from __future__ import annotations

import functools
import io


@functools.cache
def _plt():
    """pyplot, set up at the first plot: a distillation job imports this module and draws only at its stage ends,
    the listings and most jobs never."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "scd-bench"
    plt.rcParams["font.size"] = 8
    return plt


def to_svg(fig) -> str:
    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    _plt().close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def bars(labels: list[str], means: list[float], stds: list[float], ylabel: str, title: str) -> str:
    many = len(labels) > 6  # at most 5.6 in wide (two fit side by side on a 1280 px page): labels stand up
    fig, ax = _plt().subplots(figsize=(min(1.2 + 0.9 * len(labels), 5.6), 3.8 if many else 2.6))
    ax.bar(range(len(labels)), means, yerr=stds, capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(labels)), labels, rotation=75 if many else 20, ha="right", rotation_mode="anchor",
                  fontsize=7 if many else None)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.set_ylim(0, 1)
    return to_svg(fig)


def histogram_svg(hist: dict, title: str) -> str:
    """AW weights in [0, 1]: one step histogram per subdomain (or all rows when there are none)."""
    groups = [g for g in hist if g not in ("bins", "all", "stage", "checkpoint") and not g.startswith("mean/")]
    edges = [i / hist["bins"] for i in range(hist["bins"] + 1)]
    fig, ax = _plt().subplots(figsize=(3.4, 2.2))
    for g in groups or ["all"]:
        ax.stairs(hist[g], edges, label=g.upper() if g != "all" else "all rows", fill=False, linewidth=1.4)
    ax.set_xlim(0, 1)
    ax.set_xlabel("w (weight of the teacher term)")
    ax.set_ylabel("training rows")
    ax.set_title(title, fontsize=8)
    if groups:
        ax.legend(frameon=False)
    return to_svg(fig)


def schedule_svg(runs: list[dict], title: str) -> str:
    """Selected checkpoint (index in the trajectory, T* last) against stage, one line per seed."""
    fig, ax = _plt().subplots(figsize=(3.4, 2.3))
    names: list[str] = []
    stages = 1
    for k, r in enumerate(runs):
        names = r["checkpoints"] if len(r["checkpoints"]) > len(names) else names
        # seeds that chose alike would hide each other: a small vertical offset per seed keeps each line visible
        idx = [r["checkpoints"].index(c) + 0.06 * (k - (len(runs) - 1) / 2) for c in r["schedule"]]
        stages = max(stages, len(idx))
        ax.plot(range(1, len(idx) + 1), idx, marker="o", label=f"seed {r['seed']}", alpha=0.8)
    ax.set_xticks(range(1, stages + 1))
    ax.set_yticks(range(len(names)), [n.replace("best", "T*") for n in names])
    ax.set_xlabel("stage")
    ax.set_ylabel("teacher checkpoint")
    ax.set_title(title, fontsize=8)
    ax.legend(frameon=False, fontsize=7)
    return to_svg(fig)


def ablation_svg(series: dict[str, list[tuple[float, float, float]]], xlabel: str, ylabel: str, title: str,
                 log2_x: bool = False) -> str:
    """Score against an ablated value, one line (mean ± std over seeds) per method."""
    fig, ax = _plt().subplots(figsize=(3.6, 2.5))
    for name, points in series.items():
        xs, ms, ss = zip(*sorted(points))
        ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label=name)
    if log2_x:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({x for p in series.values() for x, _, _ in p}),
                      [f"{x:g}" for x in sorted({x for p in series.values() for x, _, _ in p})])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=8)
    ax.legend(frameon=False, fontsize=7)
    return to_svg(fig)


def forest_svg(labels: list[str], diffs: list[float], cis: list[tuple[float, float]], marked: list[bool],
               title: str, xlabel: str) -> str:
    """A forest plot: per row, its difference (point) and 95% interval (line), against a dashed line at zero;
    rows whose interval excludes zero filled, the others hollow."""
    fig, ax = _plt().subplots(figsize=(4.2, 0.6 + 0.22 * len(labels)))
    for y, (d, (lo, hi), m) in enumerate(zip(diffs, cis, marked)):
        ax.plot([lo, hi], [y, y], color="#4c72b0", linewidth=1.4)
        ax.plot([d], [y], "o", markersize=4, color="#4c72b0", markerfacecolor="#4c72b0" if m else "white")
    ax.axvline(0, color="#888888", linestyle="--", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=8)
    return to_svg(fig)


def cd_diagram_svg(ranks: dict[str, float], cd: float | None, cliques: list[list[str]], title: str) -> str:
    """A critical-difference diagram (Demsar 2006): an axis of average rank (1, the best, on the left), each method
    joined to its name by a line, the better half named on the left and the other on the right with its average
    rank; a thick bar under the axis joins each group of methods whose ranks differ by less than the critical
    difference (`cliques`: not significantly different), and the CD interval is drawn above the axis from rank 1.
    `cd` None: no interval (nothing to compare)."""
    if not ranks:
        raise ValueError("a critical-difference diagram needs the average ranks of at least one method")
    order = sorted(ranks, key=lambda r: (ranks[r], r))
    k = len(order)
    lo, hi = 1.0, float(max(k, 2, *(int(-(-ranks[r] // 1)) for r in order)))
    left, right = order[: (k + 1) // 2], order[(k + 1) // 2:]
    axis_y, bar_step = 1.0, 0.16
    first_name = axis_y + 0.3 + bar_step * len(cliques)
    name_step = 0.32
    bottom = first_name + name_step * max(len(left), len(right))
    pad = 0.45 * (hi - lo) + 0.6  # room for the names either side
    fig, ax = _plt().subplots(figsize=(6.4, 0.45 + 0.62 * bottom))
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(bottom, 0.0)
    ax.axis("off")
    ax.plot([lo, hi], [axis_y, axis_y], color="black", linewidth=1)
    for t in range(int(lo), int(hi) + 1):
        ax.plot([t, t], [axis_y, axis_y - 0.07], color="black", linewidth=1)
        ax.text(t, axis_y - 0.1, str(t), ha="center", va="bottom", fontsize=7)
    for t in range(int(lo), int(hi)):
        ax.plot([t + 0.5, t + 0.5], [axis_y, axis_y - 0.035], color="black", linewidth=0.6)
    ax.text((lo + hi) / 2, axis_y - 0.3, "average rank", ha="center", va="bottom", fontsize=7)
    if cd is not None:
        y = 0.3
        ax.plot([lo, lo + cd], [y, y], color="black", linewidth=1)
        for x in (lo, lo + cd):
            ax.plot([x, x], [y - 0.05, y + 0.05], color="black", linewidth=1)
        ax.text(lo + cd / 2, y - 0.07, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=7)
    for side, names, edge, align in (("left", left, lo - 0.15 * (hi - lo) - 0.2, "right"),
                                     ("right", right[::-1], hi + 0.15 * (hi - lo) + 0.2, "left")):
        for i, name in enumerate(names):
            y = first_name + name_step * i
            r = ranks[name]
            ax.plot([r, r, edge], [axis_y, y, y], color="#4c72b0", linewidth=0.8)
            label = f"{name} ({r:.2f})" if side == "right" else f"({r:.2f}) {name}"
            ax.text(edge + (-0.05 if align == "right" else 0.05), y, label, ha=align, va="center", fontsize=7)
    for j, clique in enumerate(cliques):
        y = axis_y + 0.2 + bar_step * j
        xs = [ranks[m] for m in clique]
        ax.plot([min(xs) - 0.04, max(xs) + 0.04], [y, y], color="black", linewidth=3, solid_capstyle="round")
    ax.set_title(title, fontsize=8)
    return to_svg(fig)
