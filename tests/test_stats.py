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


# --- corpus metrics: entity-level F1 and Cohen's kappa, recomputed per resample ------------------------------------

def random_bio(rng, n_sentences: int, miss: float) -> tuple[list, list]:
    """Gold IOB2 sequences and predictions of them (`noisy`)."""
    y_true = []
    for _ in range(n_sentences):
        length, tags = int(rng.integers(3, 12)), []
        while len(tags) < length:
            span = int(rng.integers(1, 3)) if rng.random() < 0.25 else 0
            tags += ["B-Disease"] + ["I-Disease"] * (span - 1) + ["O"] if span else ["O"]
        y_true.append(tags[:length])
    return y_true, noisy(rng, y_true, miss)


def noisy(rng, y_true: list, miss: float) -> list:
    """Predictions: each gold mention missed with probability `miss` (else kept, or split into one-token mentions
    one time in five), and a spurious one-token mention on an O token with probability miss / 4."""
    y_pred = []
    for tags in y_true:
        pred = list(tags)
        for i, tag in enumerate(tags):
            if tag == "B-Disease":
                j = i + 1
                while j < len(tags) and tags[j] == "I-Disease":
                    j += 1
                if rng.random() < miss:
                    pred[i:j] = ["O"] * (j - i)
                elif rng.random() < 0.2:
                    pred[i:j] = ["B-Disease"] * (j - i)
            elif tag == "O" and rng.random() < miss / 4:
                pred[i] = "B-Disease"
        y_pred.append(pred)
    return y_pred


def entity_counts(y_true, y_pred) -> np.ndarray:
    """Per sentence (correct, predicted, gold) entities, seqeval's get_entities on the sentence alone."""
    from seqeval.metrics.sequence_labeling import get_entities

    out = []
    for t, p in zip(y_true, y_pred):
        gold, pred = set(get_entities(t)), set(get_entities(p))
        out.append([len(gold & pred), len(pred), len(gold)])
    return np.array(out).reshape(-1, 3)


@pytest.mark.parametrize("what", stats.ENTITY_SCORES)
def test_entity_metric_is_seqeval_on_the_full_set_and_on_each_resample(what):
    import seqeval.metrics

    score = getattr(seqeval.metrics, f"{what}_score")
    rng = np.random.default_rng(11)
    y_true, y_pred = random_bio(rng, 60, miss=0.3)
    x = entity_counts(y_true, y_pred)
    idx = rng.integers(0, 60, size=(25, 60))
    idx[0] = np.arange(60)  # the full set
    got = stats.entity_metric(what)(x, idx)
    want = [score([y_true[i] for i in row], [y_pred[i] for i in row], zero_division=0) for row in idx]
    assert got == pytest.approx(want)
    assert 0 < got[0] < 1


def test_entity_metric_hand_computed():
    x = np.array([[1, 2, 2], [0, 1, 0], [1, 1, 1]])  # (correct, predicted, gold) per item
    idx = np.array([[0, 1, 2], [0, 0, 0], [1, 1, 1], [2, 2, 2]])
    # all: 2 correct of 4 predicted and 3 gold: P 1/2, R 2/3, F1 2 * 2 / (4 + 3); item 1 alone: nothing to find
    assert stats.entity_metric("f1")(x, idx) == pytest.approx([4 / 7, 0.5, 0.0, 1.0])
    assert stats.entity_metric("precision")(x, idx) == pytest.approx([0.5, 0.5, 0.0, 1.0])
    assert stats.entity_metric("recall")(x, idx) == pytest.approx([2 / 3, 0.5, 0.0, 1.0])
    # a mean of per-item F1s would be (2/4 + 0 + 1) / 3 = 0.5, not 4/7
    with pytest.raises(ValueError, match="what must be one of"):
        stats.entity_metric("accuracy")


def compared_pair(metric, a, b, seeds: int = 1, resamples: int = 400):
    point, values = stats.hierarchical_bootstrap({"a": a, "b": b}, metric, stats.seed_draws(seeds, resamples), 0, "t")
    return stats.compare(point["a"], point["b"], values["a"], values["b"])


def test_entity_metric_finds_a_known_difference_and_not_an_identical_pair():
    import seqeval.metrics

    rng = np.random.default_rng(12)
    y_true, good = random_bio(rng, 300, miss=0.1)
    bad = noisy(rng, y_true, miss=0.5)
    a, b = entity_counts(y_true, good), entity_counts(y_true, bad)
    c = compared_pair(stats.entity_metric("f1"), [a], [b])
    want = seqeval.metrics.f1_score(y_true, good) - seqeval.metrics.f1_score(y_true, bad)
    assert c["diff"] == pytest.approx(want) and want > 0.1
    assert 0 < c["ci95"][0] < want < c["ci95"][1] and c["p"] < 0.01
    same = compared_pair(stats.entity_metric("f1"), [a], [a.copy()])
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0] and same["p"] == 1.0


def test_kappa_metric_hand_computed():
    # golds A B C, predictions A C C, linear weights over 3 labels (distance / 2): observed (0 + 1/2 + 0) / 3 = 1/6;
    # expected: gold (1/3, 1/3, 1/3) x prediction (1/3, 0, 2/3) weighted = (2/3 + 1/2 + 1/3) / 3 = 1/2 -> 1 - 1/3
    x = np.array([[0, 0], [2, 1], [2, 2]])  # (prediction, gold); code 3 = outside the labels
    full = np.arange(3)[None]
    assert stats.cohen_kappa_metric(4, "linear")(x, full) == pytest.approx([2 / 3])
    # unweighted, golds A A B B, predictions A B B B: p_o 3/4, p_e 1/2 * 1/4 + 1/2 * 3/4 = 1/2 -> 1/2
    assert stats.cohen_kappa_metric(3)(np.array([[0, 0], [1, 0], [1, 1], [1, 1]]), np.arange(4)[None]) == [0.5]
    # an answer outside the labels disagrees with everything: golds A B, predictions A ?: 1 - (1/2) / (3/4) = 1/3
    assert stats.cohen_kappa_metric(3)(np.array([[0, 0], [2, 1]]), np.arange(2)[None]) == pytest.approx([1 / 3])
    # a single category throughout: 1 if all agree, else 0 (never nan)
    assert list(stats.cohen_kappa_metric(3)(np.array([[0, 0], [1, 1]]), np.array([[0, 0], [1, 1]]))) == [1.0, 1.0]
    assert list(stats.cohen_kappa_metric(3)(np.array([[0, 0], [1, 0]]), np.array([[0, 1]]))) == [0.0]


def kappa_codes(preds, golds, labels, outside):
    """(prediction, gold) codes as the aggregate stage writes them (see scd/stages/aggregate.py `_item_data`)."""
    if outside == "max":
        code = {x: i for i, x in enumerate(labels)}
        return np.array([[code.get(p, len(labels)), code[g]] for p, g in zip(preds, golds)]), len(labels) + 1
    seen = sorted({*labels, *((p if p in labels else (p or "None")) for p in preds)})
    code = {x: i for i, x in enumerate(seen)}
    return np.array([[code[p if p in labels else (p or "None")], code[g]] for p, g in zip(preds, golds)]), len(seen)


@pytest.mark.parametrize("weights", stats.KAPPA_WEIGHTS)
def test_kappa_metric_is_sklearn_on_answers_within_the_labels(weights):
    from sklearn.metrics import cohen_kappa_score

    labels = ["A", "B", "C", "D"]
    rng = np.random.default_rng(13)
    golds = list(rng.choice(labels, 50))
    preds = [g if rng.random() < 0.5 else str(rng.choice(labels)) for g in golds]
    idx = rng.integers(0, 50, size=(20, 50))
    idx[0] = np.arange(50)
    for outside in ("max", "sklearn"):
        x, n = kappa_codes(preds, golds, labels, outside)
        got = stats.cohen_kappa_metric(n, weights, outside)(x, idx)
        want = [cohen_kappa_score([golds[i] for i in row], [preds[i] for i in row], labels=labels, weights=weights)
                for row in idx]
        assert got == pytest.approx(want), outside


@pytest.mark.parametrize("outside", ["max", "sklearn"])
@pytest.mark.parametrize("weights", stats.KAPPA_WEIGHTS)
def test_kappa_metric_is_the_tasks_kappa_with_answers_outside_the_labels(weights, outside):
    """JMED-LLM's convention (outside="sklearn") ranks the categories each resample sees: a resample without the
    answer "E" moves "None" next to "D", and the metric follows (checked on resamples that lack it)."""
    from tasks.metrics import cohen_kappa

    labels = ["A", "B", "C", "D"]
    rng = np.random.default_rng(14)
    golds = list(rng.choice(labels, 40))
    preds = [g if rng.random() < 0.5 else str(rng.choice(labels + ["E", "", "E"])) for g in golds]
    idx = rng.integers(0, 40, size=(30, 40))
    idx[0] = np.arange(40)
    idx[1] = np.resize([i for i, p in enumerate(preds) if p != "E"], 40)  # a resample without "E"
    x, n = kappa_codes(preds, golds, labels, outside)
    got = stats.cohen_kappa_metric(n, weights, outside)(x, idx)
    want = [cohen_kappa([preds[i] for i in row], [golds[i] for i in row], labels=labels, weights=weights,
                        outside=outside) for row in idx]
    assert got == pytest.approx(want)


def test_kappa_metric_finds_a_known_difference_and_not_an_identical_pair():
    labels = ["A", "B", "C", "D", "E"]
    rng = np.random.default_rng(15)
    golds = [list(rng.choice(labels, 200)) for _ in range(3)]
    good = [[g if rng.random() < 0.8 else "" for g in gs] for gs in golds]
    bad = [[g if rng.random() < 0.4 else str(rng.choice(labels)) for g in gs] for gs in golds]
    metric = stats.cohen_kappa_metric(len(labels) + 1, "linear")
    a = [kappa_codes(p, g, labels, "max")[0] for p, g in zip(good, golds)]
    b = [kappa_codes(p, g, labels, "max")[0] for p, g in zip(bad, golds)]
    c = compared_pair(metric, a, b, seeds=3)
    assert c["diff"] > 0.2 and c["ci95"][0] > 0 and c["p"] < 0.01
    same = compared_pair(metric, a, [x.copy() for x in a], seeds=3)
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0] and same["p"] == 1.0


def test_kappa_metric_refuses_unknown_conventions():
    with pytest.raises(ValueError, match="weights must be one of"):
        stats.cohen_kappa_metric(3, "cubic")
    with pytest.raises(ValueError, match="outside must be 'max' or 'sklearn'"):
        stats.cohen_kappa_metric(3, None, "min")


# --- critical difference (Demsar 2006, Nemenyi) ---------------------------------------------------------------------

DEMSAR_Q05 = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]  # Demsar 2006, table 5a, k = 2..10
DEMSAR_Q10 = [1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920]  # table 5a, alpha 0.10


def test_nemenyi_q_is_demsars_table():
    assert [stats.nemenyi_q(k) for k in range(2, 11)] == pytest.approx(DEMSAR_Q05, abs=1e-3)
    assert [stats.nemenyi_q(k, 0.10) for k in range(2, 11)] == pytest.approx(DEMSAR_Q10, abs=1e-3)


def test_nemenyi_cd_hand_computed():
    # k = 4 methods on N = 14 datasets (Demsar's worked example): 2.569 * sqrt(4 * 5 / (6 * 14)) = 1.25
    assert stats.nemenyi_cd(4, 14) == pytest.approx(2.569 * (20 / 84) ** 0.5, abs=1e-3)
    assert stats.nemenyi_cd(4, 14) == pytest.approx(1.25, abs=5e-3)
    assert stats.nemenyi_cd(2, 1) == pytest.approx(1.96 * 1, abs=1e-3)
    for bad in [(1, 5), (3, 0)]:
        with pytest.raises(ValueError, match="at least"):
            stats.nemenyi_cd(*bad)


def test_cd_cliques_hand_computed():
    ranks = {"a": 1.0, "b": 1.5, "c": 2.5, "d": 4.0, "e": 4.2}
    # cd 1.2: a-b (c is 1.5 from a), b-c (1.0), c alone against d (1.5), d-e
    assert stats.cd_cliques(ranks, 1.2) == [["a", "b"], ["b", "c"], ["d", "e"]]
    assert stats.cd_cliques(ranks, 10) == [["a", "b", "c", "d", "e"]]
    assert stats.cd_cliques(ranks, 0.1) == []  # every pair differs
    assert stats.cd_cliques({"x": 2.0, "y": 3.0}, 1.0) == []  # a difference of exactly CD is significant


def test_critical_difference_of_ranks():
    ranks = {"scd+aw": 1.2, "td": 2.0, "cd": 2.8}
    got = stats.critical_difference(ranks, 10)  # cd = 2.343 * sqrt(3 * 4 / 60) = 1.048: 0.8 apart is not enough
    assert got["cd"] == pytest.approx(2.343 * (12 / 60) ** 0.5, abs=1e-3) and got["k"] == 3 and got["n"] == 10
    assert got["cliques"] == [["scd+aw", "td"], ["td", "cd"]] and got["alpha"] == 0.05
    assert stats.critical_difference(ranks, 20)["cliques"] == []  # cd 0.741: every pair differs
    assert stats.critical_difference(ranks, 1)["reason"].startswith("needs at least 2 methods ranked on at least 2")
    assert stats.critical_difference({"td": 1.0}, 5)["cd"] is None
