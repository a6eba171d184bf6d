"""The leaderboard's statistics (scd/stats.py) against hand-computed and independently computed cases."""
import numpy as np
import pytest

from scd import stats
from tasks.metrics import macro_f1


def correct(rate: float, n: int, rng) -> np.ndarray:
    """n items, exactly round(rate * n) of them correct, in random order."""
    x = np.zeros(n)
    x[: round(rate * n)] = 1
    return rng.permutation(x)


def test_a_known_difference_is_found():
    rng = np.random.default_rng(1)
    better = [correct(0.8, 300, rng) for _ in range(3)]
    worse = [correct(0.6, 300, rng) for _ in range(3)]
    point, values = stats.hierarchical_bootstrap({"a": better, "b": worse}, stats.mean_metric,
                                                 stats.seed_draws(3, 400, seed=0), seed=0, key="t")
    c = stats.compare(point["a"], point["b"], values["a"], values["b"])
    assert c["diff"] == pytest.approx(0.2)
    assert 0 < c["ci95"][0] < 0.2 < c["ci95"][1]
    assert c["p"] == pytest.approx(2 / 401)  # no resample at or below zero: the add-one floor
    assert c["se"] > 0 and stats.mde(c["se"]) == pytest.approx(2.8016 * c["se"], rel=1e-4)


def test_an_identical_pair_is_not():
    rng = np.random.default_rng(2)
    same = [correct(0.7, 200, rng) for _ in range(3)]
    point, values = stats.hierarchical_bootstrap({"a": same, "b": [x.copy() for x in same]}, stats.mean_metric,
                                                 stats.seed_draws(3, 300), key="t")
    c = stats.compare(point["a"], point["b"], values["a"], values["b"])
    assert c["diff"] == 0 and c["ci95"][0] <= 0 <= c["ci95"][1] and c["p"] == 1.0


def test_a_small_noisy_difference_is_not_significant():
    """Two rows that differ on 2 items of 100 (one seed): the interval holds 0 and p is large."""
    a = np.ones(100)
    b = a.copy()
    b[:2] = 0
    point, values = stats.hierarchical_bootstrap({"a": [a], "b": [b]}, stats.mean_metric, stats.seed_draws(1, 500))
    c = stats.compare(point["a"], point["b"], values["a"], values["b"])
    assert c["diff"] == pytest.approx(0.02) and c["ci95"][0] <= 0 and c["p"] > 0.05


def test_seeds_are_resampled_too():
    """Rows identical within each seed's items but whose difference flips sign between seeds: the seed level of the
    bootstrap makes the interval wide and hold zero (items alone would make each seed's difference certain)."""
    ones, zeros = np.ones(200), np.zeros(200)
    a, b = [ones, zeros, ones, zeros], [zeros, ones, zeros, ones]
    point, values = stats.hierarchical_bootstrap({"a": a, "b": b}, stats.mean_metric, stats.seed_draws(4, 500))
    c = stats.compare(point["a"], point["b"], values["a"], values["b"])
    assert c["diff"] == 0 and c["ci95"][0] < -0.4 and c["ci95"][1] > 0.4 and c["p"] > 0.5


def test_holm_on_fixed_p_values():
    # hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm({"x": 0.5, "y": 0.6}) == pytest.approx({"x": 1.0, "y": 1.0})  # capped at 1
    assert stats.holm([0.001, 0.2, 0.01]) == pytest.approx([0.003, 0.2, 0.02])
    assert stats.holm([]) == []


def test_gap_closed_on_a_hand_case():
    m, s, t = np.array([0.7, 0.6, 0.8]), np.array([0.5, 0.5, 0.5]), np.array([0.9, 0.7, 0.9])
    g = stats.gap_closed((0.7, 0.5, 0.9), (m, s, t))
    assert g["value"] == pytest.approx(0.5) and g["gap"] == pytest.approx(0.4)
    ratios = [0.5, 0.5, 0.75]  # (m - s) / (t - s) per resample
    assert g["ci95"] == pytest.approx(list(np.percentile(ratios, [2.5, 97.5])))
    assert g["meaningful"]
    behind = stats.gap_closed((0.7, 0.9, 0.5), (m, t, s))  # the teacher clearly behind: a ratio of nothing
    assert behind["gap_ci95"][1] < 0 and not behind["meaningful"]
    flat = stats.gap_closed((0.6, 0.5, 0.5), (m, s, s))
    assert flat["value"] is None and flat["ci95"] is None and not flat["meaningful"]


def test_macro_f1_metric_is_the_tasks_macro_f1():
    labels = ["yes", "no", "maybe"]
    rng = np.random.default_rng(3)
    golds = list(rng.choice(labels, 40))
    preds = list(rng.choice(labels + ["???"], 40))  # an unparseable answer is no label
    code = {x: i for i, x in enumerate(labels)}
    x = np.array([[code.get(p, -1), code[g]] for p, g in zip(preds, golds)])
    idx = rng.integers(0, 40, size=(30, 40))
    idx[0] = np.arange(40)
    idx[1] = [i for i in range(40) if golds[i] != "maybe"][:1] * 40  # a resample where one label is absent
    got = stats.macro_f1_metric(3)(x, idx)
    want = [macro_f1([preds[i] for i in row], [golds[i] for i in row], labels=labels) for row in idx]
    assert got == pytest.approx(want)


def slow_hierarchical_macro_f1(preds, golds, labels, draws, seed, key):
    """An independent, loop-by-loop hierarchical bootstrap of macro-F1 on the same draws."""
    out = []
    counters = {s: 0 for s in range(draws.shape[1])}
    items = {s: stats.item_draws(len(golds[s]), int((draws == s).sum()), seed, key, s) for s in counters}
    for b in range(draws.shape[0]):
        per_seed = []
        for j in range(draws.shape[1]):
            s = draws[b, j]
            row = items[s][counters[s]]
            counters[s] += 1
            per_seed.append(macro_f1([preds[s][i] for i in row], [golds[s][i] for i in row], labels=labels))
        out.append(sum(per_seed) / len(per_seed))
    return out


def test_macro_f1_is_bootstrapped_as_a_corpus_metric():
    labels = ["a", "b", "c"]
    rng = np.random.default_rng(4)
    golds = [list(rng.choice(labels, 9)) for _ in range(2)]
    preds = [list(rng.choice(labels, 9)) for _ in range(2)]
    code = {x: i for i, x in enumerate(labels)}
    data = [np.array([[code[p], code[g]] for p, g in zip(ps, gs)]) for ps, gs in zip(preds, golds)]
    draws = stats.seed_draws(2, 60, seed=5)
    point, values = stats.hierarchical_bootstrap({"r": data}, stats.macro_f1_metric(3), draws, seed=5, key="k")
    assert values["r"] == pytest.approx(slow_hierarchical_macro_f1(preds, golds, labels, draws, 5, "k"))
    assert point["r"] == pytest.approx(np.mean([macro_f1(p, g, labels=labels) for p, g in zip(preds, golds)]))
    # not the mean of per-item values: a per-item "F1" (1 if right) would be accuracy, which differs here
    assert point["r"] != pytest.approx(np.mean([np.mean(np.array(p) == np.array(g)) for p, g in zip(preds, golds)]))


def test_the_bootstrap_is_seeded():
    rng = np.random.default_rng(6)
    data = {"a": [correct(0.5, 50, rng) for _ in range(2)], "b": [correct(0.6, 50, rng) for _ in range(2)]}
    one = stats.hierarchical_bootstrap(data, stats.mean_metric, stats.seed_draws(2, 100, 7), 7, "t")[1]
    two = stats.hierarchical_bootstrap(data, stats.mean_metric, stats.seed_draws(2, 100, 7), 7, "t")[1]
    other = stats.hierarchical_bootstrap(data, stats.mean_metric, stats.seed_draws(2, 100, 8), 8, "t")[1]
    assert all(np.array_equal(one[r], two[r]) for r in data)
    assert not np.array_equal(one["a"], other["a"])


def test_ranks_and_friedman():
    scores = {"t1": {"x": 0.9, "y": 0.5, "z": 0.7}, "t2": {"x": 0.8, "y": 0.8, "z": 0.1},
              "t3": {"x": 0.3, "y": 0.2, "z": 0.1}}
    # hand: t1 x1 y3 z2; t2 x1.5 y1.5 z3; t3 x1 y2 z3
    assert stats.average_ranks(scores) == pytest.approx({"x": 3.5 / 3, "y": 6.5 / 3, "z": 8 / 3})
    assert stats.average_ranks({"t": {"x": 0.1, "y": 0.2}}, {"t": False}) == {"x": 1.0, "y": 2.0}  # lower is better
    f = stats.friedman(scores)
    # hand (Friedman with tie correction): k = 3, n = 3, rank sums 3.5, 6.5, 8
    n, k, sums = 3, 3, np.array([3.5, 6.5, 8])
    chi2 = 12 / (n * k * (k + 1)) * (sums ** 2).sum() - 3 * n * (k + 1)
    chi2 /= 1 - (2 ** 3 - 2) / (n * (k ** 3 - k))  # one tie of two
    assert f["statistic"] == pytest.approx(chi2) and 0 < f["p"] < 1 and f["n_tasks"] == 3
    assert stats.friedman({"t": scores["t1"]})["reason"].startswith("needs at least 3 rows")


def test_bad_bootstrap_sizes_are_one_line():
    with pytest.raises(ValueError, match="at least one seed and one resample"):
        stats.seed_draws(0, 100)
