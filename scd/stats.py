"""Statistics of the leaderboard: pure functions (numpy, and scipy for Friedman's test; no I/O). The aggregate stage
calls them; the practice they follow is the one the statistics notes of the docs describe.

The design is paired: every row of a task was evaluated on the same test items with the same training seeds. A row's
data is one array per seed (one entry per test item, in the same item order for every row of that seed).

Hierarchical bootstrap (`hierarchical_bootstrap`): each resample draws the seeds with replacement, then, within each
drawn seed, the test items with replacement; the SAME draws serve every row (paired), and the task metric is
recomputed on each resampled seed through a batched callable `metric(x, idx) -> values`, `x` one seed's per-item
array and `idx` an (m, n) array of item indices, one resample per line (so a corpus-level metric such as macro-F1 is
recomputed on the resample, never averaged from per-item values). Each metric is a function of per-item sufficient
statistics: correctness (`mean_metric`), (prediction, gold) label codes (`macro_f1_metric`, `cohen_kappa_metric`,
through a confusion count per resample), (correct, predicted, gold) entity counts (`entity_metric`). A row's value
on a resample is the mean over the drawn seeds of the metric. Differences, the gap closed and the average over
tasks are computed per resample from these values, so they share the draws.

p-value (`bootstrap_p`): the two-sided bootstrap p of the paired difference, 2 * min(P(d* <= 0), P(d* >= 0)) with
the add-one correction ((k + 1) / (B + 1)), capped at 1. Why this test rather than the notes' sign-flip permutation
test: it is the test the reported interval inverts (p < 0.05 exactly when the 95% percentile interval excludes 0, up
to the add-one correction), so a sentence never pairs a "significant" p with an interval that contains zero; and it
carries both sources of variance the notes ask for (seeds and items) and any corpus metric, where a per-item
sign flip would see the test items only. An identical pair gives p = 1.

Minimum detectable effect (`mde`): (z_0.975 + z_0.8) * SE = 2.80 * SE, SE the bootstrap standard deviation of a
paired difference; the aggregate stage uses the median over the rows compared of the SE of (row - TD).

Across tasks (Demsar 2006): average ranks, Friedman's test, and the Nemenyi critical difference of average ranks
(`nemenyi_cd`) with the groups of methods it cannot tell apart (`cd_cliques`), the bars of a critical-difference
diagram. Demsar applies the Nemenyi post-hoc test after Friedman's test rejects equal ranks.
"""
from __future__ import annotations

import zlib
from typing import Callable, Sequence

import numpy as np
from scipy.stats import friedmanchisquare, studentized_range

Z_975 = 1.959963984540054
Z_80 = 0.8416212335729143
MDE_FACTOR = Z_975 + Z_80  # 80% power at two-sided alpha = 0.05
DEFAULT_RESAMPLES = 2000

Metric = Callable[[np.ndarray, np.ndarray], np.ndarray]


def mean_metric(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """A metric that is a mean of per-item values (accuracy, exact match: `x` the 0/1 correctness)."""
    return np.asarray(x, dtype=float)[idx].mean(axis=1)


def macro_f1_metric(n_labels: int) -> Metric:
    """Macro-F1 over labels 0..n_labels-1 as tasks/metrics.py's `macro_f1` defines it: `x` is an (n, 2) integer
    array of (prediction, gold) label codes, a prediction outside the labels coded -1; per resample, the mean of
    per-label F1 over the labels that occur among the resample's golds or predictions (0 when none does)."""
    def metric(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        pred, gold = np.asarray(x)[:, 0][idx], np.asarray(x)[:, 1][idx]
        total, seen = np.zeros(idx.shape[0]), np.zeros(idx.shape[0])
        for c in range(n_labels):
            p, g = pred == c, gold == c
            tp, fp, fn = (p & g).sum(1), (p & ~g).sum(1), (~p & g).sum(1)
            denom = 2 * tp + fp + fn
            total += np.where(tp > 0, 2 * tp / np.maximum(denom, 1), 0.0)
            seen += denom > 0
        return np.where(seen > 0, total / np.maximum(seen, 1), 0.0)
    return metric


ENTITY_SCORES = ("f1", "precision", "recall")


def entity_metric(what: str = "f1") -> Metric:
    """Entity-level micro precision, recall or F1 (`what`) from per-item counts, the seqeval metrics' definition
    (tasks/metrics.py): `x` is an (n, 3) integer array of (correct, predicted, gold) entities per item, the
    predicted count including whatever the metric counts as predicted (the strict metrics add the mentions absent
    from the sentence). Per resample the counts are summed over the drawn items and the corpus score computed from
    the sums: precision = correct / predicted, recall = correct / gold, F1 their harmonic mean, 0 where a
    denominator is 0 (zero_division=0)."""
    if what not in ENTITY_SCORES:
        raise ValueError(f"entity_metric: what must be one of {ENTITY_SCORES}, got {what!r}")

    def metric(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        columns = np.asarray(x, dtype=np.int64).reshape(-1, 3).T
        tp, predicted, gold = (np.ascontiguousarray(c)[idx].sum(axis=1) for c in columns)  # (m,) each
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(gold > 0, tp / np.maximum(gold, 1), 0.0)
        if what == "precision":
            return precision
        if what == "recall":
            return recall
        total = precision + recall
        return np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)
    return metric


KAPPA_WEIGHTS = (None, "linear", "quadratic")


def cohen_kappa_metric(n_categories: int, weights: str | None = None, outside: str = "max") -> Metric:
    """Cohen's kappa as tasks/metrics.py's `cohen_kappa` defines it, from per-item category codes: `x` is an (n, 2)
    integer array of (prediction, gold) codes in 0..n_categories-1; per resample, a confusion count of the drawn
    items, then 1 - observed / expected weighted disagreement.

    `outside="max"`: codes 0..n_categories-2 are the declared labels in their order and code n_categories-1 is
    every prediction outside them; two labels i, j disagree by |i - j| / (L - 1) (linear; squared: quadratic; 1
    unweighted), L the number of labels, and the outside code disagrees by 1 with every label. `outside="sklearn"`
    (JMED-LLM's scorer): the codes are every category (declared labels, and each distinct answer outside them) in
    sorted order, and the distance of two categories is their distance among the categories present in the
    resample (among its golds and predictions), as sklearn's cohen_kappa_score sorts the labels it sees.
    No expected disagreement (a single category throughout): 1 if every item agrees, else 0."""
    if weights not in KAPPA_WEIGHTS:
        raise ValueError(f"cohen_kappa_metric: weights must be one of {KAPPA_WEIGHTS}, got {weights!r}")
    if outside not in ("max", "sklearn"):
        raise ValueError(f"cohen_kappa_metric: outside must be 'max' or 'sklearn', got {outside!r}")
    k = int(n_categories)
    power = {None: 0, "linear": 1, "quadratic": 2}[weights]
    if outside == "max":
        labels = np.arange(k - 1)
        dist = np.abs(labels[:, None] - labels[None, :]) / max(k - 2, 1)
        fixed = np.ones((k, k))
        fixed[: k - 1, : k - 1] = dist ** power if power else (dist > 0)
        np.fill_diagonal(fixed, 0.0)

    def metric(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        codes = np.asarray(x, dtype=np.int64)
        cell = (codes[:, 1] * k + codes[:, 0])[idx]  # gold row, prediction column
        m, n = idx.shape
        confusion = np.bincount((cell + (np.arange(m) * k * k)[:, None]).ravel(), minlength=m * k * k
                                ).reshape(m, k, k).astype(float)
        gold, pred = confusion.sum(axis=2), confusion.sum(axis=1)  # (m, k) each
        if outside == "max":
            w = np.broadcast_to(fixed, (m, k, k))
        else:
            position = np.cumsum((gold + pred) > 0, axis=1)  # rank among the categories present (absent: unused)
            gap = np.abs(position[:, :, None] - position[:, None, :]).astype(float)
            w = gap ** power if power else (gap > 0).astype(float)
        observed = (confusion * w).sum(axis=(1, 2)) / n
        expected = (gold[:, :, None] * pred[:, None, :] * w).sum(axis=(1, 2)) / n ** 2
        agree = np.trace(confusion, axis1=1, axis2=2) == n
        degenerate = expected <= 1e-12
        return np.where(degenerate, agree.astype(float), 1.0 - observed / np.where(degenerate, 1.0, expected))
    return metric


def seed_draws(n_seeds: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, n_seeds) indices of the seeds drawn with replacement. One seed: every draw is that seed, and the
    interval covers test-set variance only."""
    if n_seeds < 1 or resamples < 1:
        raise ValueError(f"bootstrap needs at least one seed and one resample (got {n_seeds} seeds, {resamples} "
                         "resamples)")
    return np.random.default_rng([seed, 1]).integers(0, n_seeds, size=(resamples, n_seeds))


def hierarchical_bootstrap(data: dict[str, Sequence[np.ndarray]], metric: Metric, draws: np.ndarray,
                           seed: int = 0, key: str = "") -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Point estimates and resampled values of the rows in `data` ({row: [per-item array of seed 0, of seed 1,
    ...]}, every row with the same seeds and, per seed, the same items in the same order): (point {row: mean over
    seeds of the metric}, resampled {row: (B,) values}). `draws` are `seed_draws`' seed indices (shared by every
    task, so that averages over tasks resample the same seeds); the items are drawn per seed from `seed` and `key`
    (e.g. the task's name), the same for every row."""
    rows = list(data)
    n_seeds = draws.shape[1]
    for row in rows:
        if len(data[row]) != n_seeds:
            raise ValueError(f"row {row!r} has {len(data[row])} seeds, the draws {n_seeds}")
    point = {row: float(np.mean([metric(x, np.arange(len(x))[None])[0] for x in data[row]])) for row in rows}
    slots = {row: np.empty(draws.shape) for row in rows}
    for s in range(n_seeds):
        where = draws == s
        m = int(where.sum())
        if not m:
            continue
        sizes = {len(data[row][s]) for row in rows}
        if len(sizes) != 1:
            raise ValueError(f"seed index {s}: the rows have different numbers of items {sorted(sizes)}")
        n = sizes.pop()
        idx = item_draws(n, m, seed, key, s)
        for row in rows:
            slots[row][where] = metric(data[row][s], idx)
    return point, {row: v.mean(axis=1) for row, v in slots.items()}


def item_draws(n_items: int, m: int, seed: int, key: str, seed_index: int) -> np.ndarray:
    """(m, n_items) item indices drawn with replacement for the m draws of seed `seed_index` (the draws where
    `seed_draws` picked it, in row-major order), from `seed` and `key`: the same for every row."""
    rng = np.random.default_rng([seed, 2, zlib.crc32(key.encode()), seed_index])
    return rng.integers(0, n_items, size=(m, n_items), dtype=np.int32 if n_items < 2**31 else np.int64)


def percentile_ci(values: np.ndarray) -> list[float]:
    """The 95% percentile interval [2.5%, 97.5%] of resampled values (NaNs, undefined resamples, left out)."""
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value of H0: difference = 0, from the resampled differences (see the module doc)."""
    d = np.asarray(diffs, dtype=float)
    k = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return float(min(1.0, 2 * (k + 1) / (len(d) + 1)))


def compare(point_a: float, point_b: float, a: np.ndarray, b: np.ndarray) -> dict:
    """Row a against row b: the difference a - b, its 95% interval, its unadjusted p (`p`) and its SE."""
    d = np.asarray(a) - np.asarray(b)
    return {"diff": point_a - point_b, "ci95": percentile_ci(d), "p": bootstrap_p(d), "se": float(np.std(d, ddof=1))
            if len(d) > 1 else 0.0}


def holm(pvalues: dict[str, float] | Sequence[float]):
    """Holm's step-down adjustment (family-wise error). Sorted ascending p_(1) <= ... <= p_(m), the adjusted
    p_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j)). Takes a list (returns a list) or a dict (returns a dict)."""
    keys = list(pvalues) if isinstance(pvalues, dict) else list(range(len(pvalues)))
    values = [float(pvalues[k]) for k in keys]
    m = len(values)
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: values[i])):
        running = max(running, min(1.0, (m - rank) * values[i]))
        out[i] = running
    return dict(zip(keys, out)) if isinstance(pvalues, dict) else out


def gap_closed(point: tuple[float, float, float], resampled: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict:
    """(m - S) / (T - S) for point = (m, S, T) with the 95% interval of the ratio recomputed on each resample
    (resamples where T = S are undefined and left out). `gap` is T - S with its interval: the ratio means something
    only where the teacher is clearly ahead, that interval above zero (`meaningful`)."""
    m, s, t = point
    mb, sb, tb = (np.asarray(v, dtype=float) for v in resampled)
    gap = tb - sb
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(gap != 0, (mb - sb) / np.where(gap != 0, gap, 1), np.nan)
    gap_ci = percentile_ci(gap)
    out = {"value": (m - s) / (t - s) if t != s else None,
           "ci95": percentile_ci(ratio) if np.isfinite(ratio).any() else None,
           "gap": t - s, "gap_ci95": gap_ci, "meaningful": bool(gap_ci[0] > 0)}
    return out


def mde(se: float) -> float:
    """Minimum detectable effect at 80% power, two-sided alpha 0.05, of a paired difference with standard error
    `se`: (z_0.975 + z_0.8) * se."""
    return MDE_FACTOR * float(se)


def average_ranks(scores: dict[str, dict[str, float]], higher_is_better: dict[str, bool] | None = None
                  ) -> dict[str, float]:
    """Per task {task: {row: score}}, rank the rows (1 = best, ties share their mean rank) and average each row's
    ranks over the tasks. Only rows scored on every task are ranked."""
    tasks = list(scores)
    rows = [r for r in (scores[tasks[0]] if tasks else {}) if all(r in scores[t] for t in tasks)]
    ranks = _rank_matrix(scores, rows, higher_is_better or {})
    return {row: float(ranks[:, j].mean()) for j, row in enumerate(rows)} if tasks else {}


def _rank_matrix(scores: dict, rows: list[str], higher_is_better: dict) -> np.ndarray:
    out = np.zeros((len(scores), len(rows)))
    for i, (task, row_scores) in enumerate(scores.items()):
        sign = -1.0 if higher_is_better.get(task, True) else 1.0
        values = np.array([sign * row_scores[r] for r in rows])
        for j, v in enumerate(values):  # mean rank of ties: 1 + (number below) + (number equal - 1) / 2
            out[i, j] = 1 + (values < v).sum() + ((values == v).sum() - 1) / 2
    return out


def friedman(scores: dict[str, dict[str, float]], higher_is_better: dict[str, bool] | None = None) -> dict:
    """Friedman's test of equal average ranks over tasks (blocks), scipy's friedmanchisquare: {statistic, p,
    n_tasks, n_rows}; None in statistic and p, with `reason`, where it cannot be computed (fewer than 3 rows or 2
    tasks, or every task ranks all rows equal)."""
    tasks = list(scores)
    rows = [r for r in (scores[tasks[0]] if tasks else {}) if all(r in scores[t] for t in tasks)]
    out = {"n_tasks": len(tasks), "n_rows": len(rows), "statistic": None, "p": None}
    if len(rows) < 3 or len(tasks) < 2:
        return out | {"reason": f"needs at least 3 rows scored on at least 2 tasks (have {len(rows)} rows, "
                                f"{len(tasks)} tasks)"}
    signs = {t: (1.0 if (higher_is_better or {}).get(t, True) else -1.0) for t in tasks}
    columns = [[signs[t] * scores[t][r] for t in tasks] for r in rows]
    if all(len({scores[t][r] for r in rows}) == 1 for t in tasks):
        return out | {"reason": "every task scores all rows equal"}
    stat, p = friedmanchisquare(*columns)
    return out | {"statistic": float(stat), "p": float(p)}


def nemenyi_q(k_methods: int, alpha: float = 0.05) -> float:
    """The Nemenyi test's critical value q_alpha for k methods (Demsar 2006, table 5a): the studentized range
    statistic's upper alpha quantile for k groups and infinite degrees of freedom, divided by sqrt(2)."""
    if k_methods < 2 or not 0 < alpha < 1:
        raise ValueError(f"the Nemenyi test needs at least 2 methods and 0 < alpha < 1 (got {k_methods} methods, "
                         f"alpha {alpha})")
    return float(studentized_range.ppf(1 - alpha, k_methods, np.inf) / np.sqrt(2))


def nemenyi_cd(k_methods: int, n_datasets: int, alpha: float = 0.05) -> float:
    """The critical difference of average ranks (Demsar 2006): CD = q_alpha * sqrt(k (k + 1) / (6 N)) for k methods
    ranked on N datasets; two methods whose average ranks differ by at least CD differ significantly (Nemenyi)."""
    if n_datasets < 1:
        raise ValueError(f"the critical difference needs at least one dataset (got {n_datasets})")
    return nemenyi_q(k_methods, alpha) * float(np.sqrt(k_methods * (k_methods + 1) / (6 * n_datasets)))


def cd_cliques(ranks: dict[str, float], cd: float) -> list[list[str]]:
    """The maximal groups of at least two methods whose average ranks all differ by less than `cd` (the bars of a
    critical-difference diagram: methods joined by one are not significantly different), each ordered best rank
    first, the groups by their best member. A method in no group differs from every other one."""
    order = sorted(ranks, key=lambda r: (ranks[r], r))
    out: list[list[str]] = []
    reach = -1
    for i, first in enumerate(order):
        j = i
        while j + 1 < len(order) and ranks[order[j + 1]] - ranks[first] < cd:
            j += 1
        if j > i and j > reach:  # not inside the previous group
            out.append(order[i: j + 1])
        reach = max(reach, j)
    return out


def critical_difference(ranks: dict[str, float], n_datasets: int, alpha: float = 0.05) -> dict:
    """The critical-difference diagram's numbers for these average ranks over `n_datasets` datasets: {cd, alpha,
    q_alpha, n, k, cliques}; cd, q_alpha and cliques None, with `reason`, where there is nothing to compare (fewer
    than 2 methods or 2 datasets)."""
    k = len(ranks)
    out = {"cd": None, "alpha": alpha, "q_alpha": None, "n": n_datasets, "k": k, "cliques": None}
    if k < 2 or n_datasets < 2:
        return out | {"reason": f"needs at least 2 methods ranked on at least 2 tasks (have {k} methods, "
                                f"{n_datasets} tasks)"}
    cd = nemenyi_cd(k, n_datasets, alpha)
    return out | {"cd": cd, "q_alpha": nemenyi_q(k, alpha), "cliques": cd_cliques(ranks, cd)}
