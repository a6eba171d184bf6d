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
