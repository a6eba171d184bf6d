"""Task metrics (Cohen's kappa, JMED-LLM entity F1, seqeval over predicted mentions) and answer parsers (letter,
label, entity_list): hand-computed values, sklearn cross-checks and edge cases."""
import math
import os
import random
from types import SimpleNamespace

import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from tasks import list_tasks, metrics, parsers
from tasks.metrics import (
    METRICS,
    cohen_kappa,
    entities_to_bio,
    entity_f1_exact,
    entity_f1_partial,
    exact_match,
    macro_f1,
)

SEQEVAL = ("seqeval_f1", "seqeval_precision", "seqeval_recall", "seqeval_f1_lenient", "seqeval_precision_lenient")


# --- registry and interface ----------------------------------------------------------------------------------------

def test_every_metric_is_registered_with_direction_max_and_returns_a_plain_float():
    names = {"exact_match", "accuracy", "macro_f1", "cohen_kappa", "entity_f1_exact", "entity_f1_partial", *SEQEVAL}
    assert names <= set(METRICS)
    assert all(METRICS.meta(n)["direction"] == "max" and METRICS.meta(n)["best"] == 1.0 for n in METRICS)
    assert all(set(METRICS.meta(n)) <= {"direction", "best", "check"} for n in METRICS)
    assert type(cohen_kappa(["A", "B"], ["A", "A"])) is float
    ex = [{"tokens": ["flu"], "tags": ["B-Disease"]}]
    assert all(type(metrics.get(n)([["flu"]], [["flu"]], examples=ex)) is float for n in SEQEVAL)


def test_old_metrics_still_work_and_accept_examples():
    assert exact_match(["a", "b"], ["a", "c"]) == 0.5
    assert metrics.get("accuracy")(["a", "b"], ["a", "c"], examples=[{}, {}]) == 0.5
    # labels a, c: F1(a) = 1, F1(c) = 0 (never predicted) -> 0.5
    assert macro_f1(["a", "b"], ["a", "c"], examples=None) == 0.5


def test_macro_f1_takes_its_labels_from_the_declaration():
    # declared a, b, c: "b" is predicted but no gold answer has it; its F1 0 counts (from the golds alone: 0.5)
    assert macro_f1(["a", "b"], ["a", "c"], labels=["a", "b", "c"]) == pytest.approx(1 / 3)
    # an unparseable answer ("") is no label, only a miss; a declared label nobody says or needs is left out
    assert macro_f1(["a", "", "c"], ["a", "b", "c"], labels=["a", "b", "c", "d"]) == pytest.approx(2 / 3)
    assert macro_f1(["a", "c"], ["a", "c"], labels=["a", "b", "c"]) == 1.0  # perfect answers: 1, "b" absent
    with pytest.raises(ValueError, match=r"gold answers \['z'\] are not among the declared labels"):
        macro_f1(["a"], ["z"], labels=["a", "b"])
    rng = random.Random(0)
    labels = ["negative", "neutral", "positive", "other"]
    for n in (5, 20, 60):
        golds = [rng.choice(labels[:3]) for _ in range(n)]  # "other" is declared, never gold
        preds = [g if rng.random() < 0.5 else rng.choice(labels) for g in golds]
        want = f1_score(golds, preds, average="macro", zero_division=0)  # sklearn: the labels seen on either side
        assert macro_f1(preds, golds, labels=labels) == pytest.approx(want), (golds, preds)
        assert ("other" in preds) <= (macro_f1(preds, golds, labels=labels) < macro_f1(preds, golds))


def test_every_macro_f1_task_declares_its_labels():
    using = [t for t in list_tasks() if any(m["name"] == "macro_f1" for m in t.metric_specs)]
    assert using and all(t.labels for t in using)
    check = METRICS.meta("macro_f1")["check"]  # the registry refuses a task file that declares none
    assert "declare `labels`" in check(SimpleNamespace(labels=None, parser="label"), {})
    assert check(SimpleNamespace(labels=["a", "b"], parser="label"), {}) is None


def test_a_misspelt_param_fails_instead_of_being_ignored():
    with pytest.raises(TypeError):
        cohen_kappa(["A"], ["A"], weight="linear")
    with pytest.raises(ValueError, match="weights"):
        cohen_kappa(["A"], ["A"], weights="cubic")


# --- Cohen's kappa -------------------------------------------------------------------------------------------------

GOLDS6 = ["A", "A", "B", "B", "C", "C"]
PREDS6 = ["A", "B", "B", "B", "C", "A"]


def test_kappa_hand_computed():
    # gold marginals (1/3, 1/3, 1/3), prediction marginals A 1/3, B 1/2, C 1/6.
    # Unweighted: p_o = 4/6; p_e = (2*2 + 2*3 + 2*1) / 36 = 1/3; kappa = (2/3 - 1/3) / (1 - 1/3) = 0.5.
    assert cohen_kappa(PREDS6, GOLDS6) == pytest.approx(0.5)
    # Linear, weights |i-j|/2: observed disagreement (A,B) 1/2 + (C,A) 1 = 1.5 / 6 = 1/4;
    # expected = 1/3 * [A: 1/2*1/2 + 1/6*1 = 5/12, B: 1/3*1/2 + 1/6*1/2 = 3/12, C: 1/3*1 + 1/2*1/2 = 7/12] = 5/12;
    # kappa = 1 - (1/4) / (5/12) = 0.4.
    assert cohen_kappa(PREDS6, GOLDS6, weights="linear") == pytest.approx(0.4)
    # Quadratic, weights (|i-j|/2)^2: observed (1/4 + 1) / 6 = 5/24;
    # expected = 1/3 * [A: 1/2*1/4 + 1/6 = 7/24, B: 1/3*1/4 + 1/6*1/4 = 3/24, C: 1/3 + 1/2*1/4 = 11/24] = 7/24;
    # kappa = 1 - 5/7 = 2/7.
    assert cohen_kappa(PREDS6, GOLDS6, weights="quadratic") == pytest.approx(2 / 7)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_equals_sklearn_on_valid_labels(weights):
    rng = random.Random(0)
    for k in (2, 3, 4, 5):
        labels = list("ABCDE"[:k])
        rng.shuffle(labels)  # a declared order that is not the sorted one: weighted distances follow it
        for n in (3, 10, 40):
            golds = [rng.choice(labels) for _ in range(n)]
            # mostly right, so kappa is not near 0 for every case
            preds = [g if rng.random() < 0.6 else rng.choice(labels) for g in golds]
            if len(set(golds) | set(preds)) < 2:
                continue  # sklearn gives nan there (tested separately)
            expected = cohen_kappa_score(golds, preds, labels=labels, weights=weights)
            assert cohen_kappa(preds, golds, labels=labels, weights=weights) == pytest.approx(expected, abs=1e-12)
    # default labels = sorted(set(golds)), as sklearn's default when every prediction is a gold label
    assert cohen_kappa(PREDS6, GOLDS6, weights=weights) == pytest.approx(cohen_kappa_score(GOLDS6, PREDS6,
                                                                                           weights=weights))


def test_kappa_weighted_distances_follow_the_declared_label_order():
    golds, preds = ["A", "B", "C", "D", "A"], ["B", "B", "D", "D", "A"]
    in_order = cohen_kappa(preds, golds, labels=["A", "B", "C", "D"], weights="linear")
    shuffled = cohen_kappa(preds, golds, labels=["B", "D", "A", "C"], weights="linear")
    assert in_order != pytest.approx(shuffled)
    # unweighted kappa does not depend on the order
    assert cohen_kappa(preds, golds, labels=["A", "B", "C", "D"]) == pytest.approx(
        cohen_kappa(preds, golds, labels=["B", "D", "A", "C"]))


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_outside_sklearn_scores_answers_outside_the_labels_as_jmed_llm_does(weights):
    """JMED-LLM's scorer: sklearn's cohen_kappa_score on the parsed answers, no labels given, an unparsed answer
    being "None". Ours gives "" for it; `outside="sklearn"` maps it back and sorts every category seen."""
    rng = random.Random(1)
    labels = ["A", "B", "C", "D"]
    for n in (5, 12, 40):
        golds = [rng.choice(labels) for _ in range(n)]
        preds = [g if rng.random() < 0.5 else rng.choice(labels + ["E", "F", ""]) for g in golds]
        preds[0] = rng.choice(["E", ""])  # at least one answer outside the labels
        upstream = cohen_kappa_score(golds, [p or "None" for p in preds], weights=weights)
        got = cohen_kappa(preds, golds, labels=labels, weights=weights, outside="sklearn")
        assert got == pytest.approx(upstream, abs=1e-12)
        if weights is None:  # unweighted, where an answer outside the labels goes makes no difference
            assert cohen_kappa(preds, golds, labels=labels) == pytest.approx(got, abs=1e-12)
    # "E" is next to "D" there, and "None" after "E": a weighted difference from "max" the fixture shows
    golds, preds = ["A", "B", "C", "D", "D"], ["A", "B", "C", "E", ""]
    assert cohen_kappa(preds, golds, labels=labels, weights="linear", outside="sklearn") == pytest.approx(
        cohen_kappa_score(golds, ["A", "B", "C", "E", "None"], weights="linear"))
    assert cohen_kappa(preds, golds, labels=labels, weights="linear") != pytest.approx(
        cohen_kappa(preds, golds, labels=labels, weights="linear", outside="sklearn"))
    with pytest.raises(ValueError, match="outside must be one of"):
        cohen_kappa(preds, golds, labels=labels, outside="drop")


def test_kappa_invalid_prediction_disagrees_maximally():
    labels = ["A", "B", "C", "D"]
    golds, preds = ["A", "B", "C", "D"], ["A", "B", "", "C"]
    # Linear, weights |i-j|/3 and 1 for "" against any label. Observed: (C,"") 1 + (D,C) 1/3 = 4/3, / 4 = 1/3.
    # Marginals: gold 1/4 each; prediction A, B, C, "" 1/4 each. Expected = 1/16 * sum over gold rows of
    # [w(g,A) + w(g,B) + w(g,C) + 1] = 1/16 * (A: 0+1/3+2/3+1 = 2, B: 1/3+0+1/3+1 = 5/3, C: 2, D: 1+2/3+1/3+1 = 3)
    # = 1/16 * 26/3 = 13/24; kappa = 1 - (1/3) / (13/24) = 5/13.
    assert cohen_kappa(preds, golds, labels=labels, weights="linear") == pytest.approx(5 / 13)
    # sklearn would sort "" in as the label nearest "A" (or, given labels=, drop the sample): both differ
    assert cohen_kappa_score(golds, preds, weights="linear") != pytest.approx(5 / 13)
    assert cohen_kappa_score(golds, preds, labels=labels, weights="linear") != pytest.approx(5 / 13)
    # Unweighted, "" is simply one more category: p_o = 1/2, p_e = 3 * 1/16 = 3/16, kappa = (5/16)/(13/16) = 5/13,
    # which is what sklearn gives when it keeps "" as a category.
    assert cohen_kappa(preds, golds, labels=labels) == pytest.approx(5 / 13)
    assert cohen_kappa(preds, golds, labels=labels) == pytest.approx(cohen_kappa_score(golds, preds))
    # "" is as far from "A" as "D" is, never nearer: with weights, one invalid answer costs the most
    near = cohen_kappa(["A", "B", "C", "B"], golds, labels=labels, weights="linear")
    assert cohen_kappa(["A", "B", "C", ""], golds, labels=labels, weights="linear") < near


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn warns on its single-label nan case
def test_kappa_edge_cases_never_nan():
    assert cohen_kappa([], []) == 0.0
    # every gold and prediction the same label: p_e = 1, sklearn gives nan, we give 1.0 for a perfect answer
    assert math.isnan(cohen_kappa_score(["A", "A"], ["A", "A"]))
    assert cohen_kappa(["A", "A"], ["A", "A"]) == 1.0
    assert cohen_kappa(["A", "A"], ["A", "A"], labels=["A", "B"], weights="linear") == 1.0
    # all wrong, p_e = 0: kappa = (0 - 0) / (1 - 0) = 0
    assert cohen_kappa(["B", "B"], ["A", "A"], labels=["A", "B"]) == 0.0
    assert cohen_kappa(["", ""], ["A", "A"], weights="quadratic") == 0.0
    with pytest.raises(ValueError, match="not among the declared labels"):
        cohen_kappa(["A"], ["E"], labels=["A", "B"])
    with pytest.raises(ValueError, match="predictions for"):
        cohen_kappa(["A"], ["A", "B"])


# --- JMED-LLM entity F1 --------------------------------------------------------------------------------------------

def test_entity_f1_exact_hand_computed():
    # sample 1: {a, b} vs {a, c}: P = R = 1/2, F1 = 1/2; sample 2: perfect -> mean (1/2 + 1) / 2 = 0.75
    assert entity_f1_exact([["a", "b"], ["x"]], [["a", "c"], ["x"]]) == pytest.approx(0.75)
    # P = 1/1, R = 1/3: F1 = 2 * 1/3 / (4/3) = 1/2
    assert entity_f1_exact([["a"]], [["a", "b", "c"]]) == pytest.approx(0.5)


@pytest.mark.parametrize("fn", [entity_f1_exact, entity_f1_partial])
def test_entity_f1_edge_cases(fn):
    assert fn([[]], [[]]) == 1.0               # nothing to find, nothing claimed
    assert fn([["a"]], [[]]) == 0.0            # claims where there is nothing (upstream divides by zero)
    assert fn([[]], [["a"]]) == 0.0            # finds nothing
    assert fn([], []) == 0.0
    assert fn([[], ["a"]], [[], ["b"]]) == pytest.approx(0.5)   # per-sample F1 1 and 0, averaged
    # duplicates change nothing: {a, b} vs {a, c} is 1/2 however often each is listed
    assert fn([["a", "a", "b"]], [["a", "c", "c", "c"]]) == pytest.approx(0.5)
    # blank entities are dropped (and "" would otherwise be a substring of every gold); entities are stripped
    assert fn([["a", "", "  "]], [["a"]]) == 1.0
    assert fn([[""]], [["abc"]]) == 0.0
    assert fn([[" a "]], [["a"]]) == 1.0
    with pytest.raises(ValueError):
        fn([["a"]], [["a"], ["b"]])
    with pytest.raises(TypeError):
        fn(["abc"], [["abc"]])  # a string is not a list of entities (set("abc") would be its letters)


def test_entity_f1_partial_matches_substrings_both_ways():
    # gold 腹痛 inside prediction 腹痛あり; prediction 熱 inside gold 発熱: P = R = 1
    assert entity_f1_partial([["腹痛あり", "熱"]], [["腹痛", "発熱"]]) == 1.0
    assert entity_f1_exact([["腹痛あり", "熱"]], [["腹痛", "発熱"]]) == 0.0
    # recall: headache <- head, fever and cough missed = 1/3; precision: head yes, rash no = 1/2;
    # F1 = 2 * 1/2 * 1/3 / (1/2 + 1/3) = (1/3) / (5/6) = 0.4
    assert entity_f1_partial([["head", "rash"]], [["headache", "fever", "cough"]]) == pytest.approx(0.4)
    # one prediction covering two golds: R = 2/2; P = 1/1
    assert entity_f1_partial([["頭痛と発熱"]], [["頭痛", "発熱"]]) == 1.0


def test_entity_f1_partial_does_not_copy_the_upstream_membership_bug():
    # Upstream counts every gold as recalled once any prediction equals any gold ({a,b} vs {a,zzz} -> 1.0).
    # Here: b is not recalled (R = 1/2) and zzz matches nothing (P = 1/2) -> F1 = 1/2.
    assert entity_f1_partial([["a", "zzz"]], [["a", "b"]]) == pytest.approx(0.5)


# --- NCBI-disease: mentions -> BIO -> seqeval ----------------------------------------------------------------------

B, I, O = "B-Disease", "I-Disease", "O"


def test_entities_to_bio_tags_every_occurrence_longest_first():
    tokens = ["cancer", "of", "the", "breast", "cancer", "and", "cancer", "."]
    assert entities_to_bio(tokens, ["cancer"], "Disease") == [B, O, O, O, B, O, B, O]
    # "breast cancer" first, whatever the listed order: "cancer" alone would otherwise take token 4 and split it
    for listed in (["cancer", "breast cancer"], ["breast cancer", "cancer"]):
        assert entities_to_bio(tokens, listed, "Disease") == [B, O, O, B, I, O, B, O]
    # a mention not in the sentence, a blank one, a differently cased one: no tags
    assert entities_to_bio(tokens, ["lung cancer", "", "  ", "Cancer"], "Disease") == [O] * 8
    assert entities_to_bio(tokens, ["of"], "Chemical") == [O, "B-Chemical", O, O, O, O, O, O]


def test_entities_to_bio_overlapping_mentions_do_not_overlap_in_tags():
    tokens = ["ovarian", "cancer", "syndrome"]
    # equally long and overlapping: the one listed first is placed, the other cannot fit
    assert entities_to_bio(tokens, ["ovarian cancer", "cancer syndrome"], "Disease") == [B, I, O]
    assert entities_to_bio(tokens, ["cancer syndrome", "ovarian cancer"], "Disease") == [O, B, I]
    # repeated overlapping occurrences of one mention: greedy left to right, non-overlapping
    assert entities_to_bio(["a", "a", "a"], ["a a"], "Disease") == [B, I, O]


def test_entities_to_bio_tokenizes_mentions_like_the_corpus():
    # NCBI-disease splits every punctuation character off: "( APC )", "tumour - suppressor"
    tokens = ["adenomatous", "polyposis", "coli", "(", "APC", ")", "tumour", "-", "suppressor", "gene"]
    assert entities_to_bio(tokens, ["adenomatous polyposis coli (APC)"], "Disease") == [B, I, I, I, I, I, O, O, O, O]
    assert entities_to_bio(tokens, ["tumour-suppressor"], "Disease") == [O] * 6 + [B, I, I, O]
    assert entities_to_bio(tokens, ["tumour - suppressor"], "Disease") == [O] * 6 + [B, I, I, O]
    assert entities_to_bio(tokens, ["adenomatous polyposis"], "Disease") == [B, I] + [O] * 8


def _two_sentences():
    s1 = ["Patients", "with", "breast", "cancer", "and", "ovarian", "cancer", "."]
    s2 = ["The", "APC", "gene", "causes", "familial", "adenomatous", "polyposis", "."]
    examples = [{"tokens": s1, "tags": [O, O, B, I, O, B, I, O]},
                {"tokens": s2, "tags": [O, O, O, O, B, I, I, O]}]
    golds = [["breast cancer", "ovarian cancer"], ["familial adenomatous polyposis"]]
    return examples, golds


def test_seqeval_metrics_hand_example():
    examples, golds = _two_sentences()
    preds = [["cancer", "breast cancer"], ["familial adenomatous polyposis", "APC", "colon cancer"]]
    # Sentence 1: "breast cancer" -> tokens 2-3 (true positive); "cancer" -> token 6 only (3 is taken), a span
    # that is not the gold 5-6 -> one false positive; gold "ovarian cancer" 5-6 is missed.
    # Sentence 2: FAP 4-6 true positive; "APC" token 1 false positive; "colon cancer" is not in the sentence.
    # Strict: "colon cancer" is one more false positive: predicted 5, gold 3, true positives 2: P = 2/5, R = 2/3,
    # F1 = 2 * 2/5 * 2/3 / (2/5 + 2/3) = 1/2.
    # Lenient: it adds no tag and counts for nothing: P = 2/4, R = 2/3, F1 = 2 * 1/2 * 2/3 / (1/2 + 2/3) = 4/7.
    scores = {n: metrics.get(n)(preds, golds, examples=examples) for n in SEQEVAL}
    assert scores["seqeval_precision"] == pytest.approx(2 / 5)
    assert scores["seqeval_recall"] == pytest.approx(2 / 3)
    assert scores["seqeval_f1"] == pytest.approx(1 / 2)
    assert scores["seqeval_precision_lenient"] == pytest.approx(0.5)
    assert scores["seqeval_f1_lenient"] == pytest.approx(4 / 7)
    assert all(metrics.get(n)(golds, golds, examples=examples) == 1.0 for n in SEQEVAL)


def test_absent_mentions_are_false_positives_only_in_the_strict_metrics():
    examples, golds = _two_sentences()
    # each distinct absent mention is one false positive: "colon  cancer" is "colon cancer" again (the same tokens),
    # blanks are no mention; a mention nested inside a placed longer one occurs in the sentence and is not absent
    preds = [["breast cancer", "ovarian cancer", "lung cancer", "cancer"],
             ["familial adenomatous polyposis", "colon cancer", "colon  cancer", "", "  "]]
    assert [len(metrics.absent_mentions(ex["tokens"], p)) for ex, p in zip(examples, preds)] == [1, 1]
    get = {n: metrics.get(n)(preds, golds, examples=examples) for n in SEQEVAL}
    assert get["seqeval_precision_lenient"] == 1.0 and get["seqeval_recall"] == 1.0
    assert get["seqeval_precision"] == pytest.approx(3 / 5) and get["seqeval_f1"] == pytest.approx(2 * 3 / 5 / (8 / 5))
    # only absent mentions predicted: strict precision 0; lenient sees no prediction (zero_division=0 as well)
    assert metrics.get("seqeval_precision")([["flu"], ["measles"]], golds, examples=examples) == 0.0
    # without absent mentions the strict metrics are seqeval's own numbers
    rng = random.Random(3)
    for _ in range(30):
        preds = [[" ".join(ex["tokens"][i: i + rng.randint(1, 3)]) for i in rng.sample(range(8), rng.randint(0, 3))]
                 for ex in examples]
        assert not any(metrics.absent_mentions(ex["tokens"], p) for ex, p in zip(examples, preds))
        for what in ("f1", "precision"):
            strict = metrics.get(f"seqeval_{what}")(preds, golds, examples=examples)
            assert strict == pytest.approx(metrics.get(f"seqeval_{what}_lenient")(preds, golds, examples=examples))


def test_seqeval_metrics_edge_cases():
    examples, golds = _two_sentences()
    # no predicted mention: precision 0 by zero_division=0, recall 0
    assert all(metrics.get(n)([[], []], golds, examples=examples) == 0.0 for n in SEQEVAL)
    # the entity type is a param: gold Disease tags under a Chemical metric would score perfect answers 0, so the
    # metric refuses them, naming the types
    with pytest.raises(ValueError, match=r"seqeval_f1: test row 0 has gold mentions of type\(s\) \['Disease'\].*"
                                         r"only 'Chemical'"):
        metrics.get("seqeval_f1")(golds, golds, examples=examples, entity_type="Chemical")
    assert metrics.get("seqeval_f1")([], [], examples=[]) == 0.0
    with pytest.raises(ValueError, match="examples"):
        metrics.get("seqeval_f1")(golds, golds)
    with pytest.raises(ValueError):
        metrics.get("seqeval_recall")(golds, golds, examples=examples[:1])
    with pytest.raises(TypeError):
        metrics.get("seqeval_precision")(["breast cancer", "x"], golds, examples=examples)


def test_entity_counts_per_row_hand_example():
    examples, golds = _two_sentences()
    preds = [["cancer", "breast cancer"], ["familial adenomatous polyposis", "APC", "colon cancer"]]
    # as in test_seqeval_metrics_hand_example: sentence 1 has 2 gold, 2 predicted spans, 1 correct; sentence 2 has
    # 1 gold, 2 predicted spans (FAP, APC), 1 correct, and "colon cancer" found nowhere
    assert [metrics.entity_counts(p, ex) for p, ex in zip(preds, examples)] == [
        {"gold": 2, "predicted": 2, "correct": 1, "absent": 0}, {"gold": 1, "predicted": 2, "correct": 1, "absent": 1}]
    assert set(metrics.ENTITY_COUNT_METRICS) == set(SEQEVAL)
    with pytest.raises(TypeError):
        metrics.entity_counts("breast cancer", examples[0])


def test_entity_counts_summed_over_rows_give_the_seqeval_metrics_on_the_ncbi_test_split(shared_data):
    """The corpus scores are functions of the rows' summed counts: on real sentences and noisy predictions, the sums
    give the task's own strict metrics and seqeval's lenient ones."""
    import seqeval.metrics

    from tasks import get_task

    task = get_task("ncbi_disease")
    rows = task.load(shared_data, {"max_train": 1, "max_validation": 1})["test"]
    rng = random.Random(5)
    preds = [[m for m in r["entities"] if rng.random() < 0.7] + (["colon cancer"] if rng.random() < 0.1 else [])
             + ([r["tokens"][0]] if rng.random() < 0.1 else []) for r in rows]
    counts = [metrics.entity_counts(p, r) for p, r in zip(preds, rows)]
    tp, predicted, absent, gold = (sum(c[k] for c in counts) for k in ("correct", "predicted", "absent", "gold"))
    assert absent > 0 and 0 < tp < gold
    want = task.scores(preds, [r["entities"] for r in rows], rows)
    assert want["precision"] == pytest.approx(tp / (predicted + absent))
    assert want["recall"] == pytest.approx(tp / gold)
    assert want["f1"] == pytest.approx(2 * tp / (predicted + absent + gold))
    y_true = [r["tags"] for r in rows]
    y_pred = [entities_to_bio(r["tokens"], p, "Disease") for p, r in zip(preds, rows)]
    assert seqeval.metrics.f1_score(y_true, y_pred) == pytest.approx(2 * tp / (predicted + gold))
    assert seqeval.metrics.precision_score(y_true, y_pred) == pytest.approx(tp / predicted)


# --- parsers -------------------------------------------------------------------------------------------------------

ABCD = SimpleNamespace(labels=["A", "B", "C", "D"], evaluation={"mode": "choices"})


def test_letter_parser_takes_the_first_option_letter():
    letter = parsers.get("letter")
    assert letter("C", ABCD) == "C"
    assert letter(" 答えはD です。B ではない", ABCD) == "D"
    assert letter("E", ABCD) == "E"             # upstream takes A-F whatever the question offers: a wrong answer
    assert letter("E は誤り、B", ABCD) == "E"   # ... not a character to skip
    assert letter("E", None) == "E"             # upstream's letters ABCDEF
    assert letter("G", SimpleNamespace(labels=list("ABCDEFGH"))) == "G"  # declared labels beyond F join them
    assert letter("G", None) == ""
    assert letter("b", ABCD) == ""              # uppercase only, as upstream
    assert letter("", ABCD) == ""
    assert letter("Answer: B", ABCD) == "A"     # upstream's rule, quirk included: the A of "Answer"


SIB = SimpleNamespace(labels=None, evaluation={"choices": ["science/technology", "travel", "politics", "science"]})


def test_label_parser_whole_labels_earliest_then_longest():
    label = parsers.get("label")
    assert label("Science/Technology", SIB) == "science/technology"          # canonical spelling returned
    assert label("science/technology news", SIB) == "science/technology"     # longest at the same position
    assert label("science, not travel", SIB) == "science"
    assert label("It is travel, not politics", SIB) == "travel"               # earliest wins, not list order
    assert label(" politics and travel", SIB) == "politics"
    assert label("travels", SIB) == ""                                        # whole words only
    assert label("geopolitics; travel", SIB) == "travel"                      # ... at both ends
    assert label("nothing here", SIB) == ""
    # without evaluation.choices the task's labels are the choices; labels may contain spaces
    sentiment = SimpleNamespace(labels=["positive", "very positive"], evaluation={"mode": "choices"})
    assert label("Very Positive!", sentiment) == "very positive"
    assert label("__import__('os').system('positive')", sentiment) == "positive"  # matched as text, never run


def test_entity_list_parser_reads_list_literals():
    parse = parsers.get("entity_list")
    assert parse(" ['腹痛', \"発熱\"] ", None) == ["腹痛", "発熱"]
    assert parse("('a', 'b')", None) == ["a", "b"]
    assert parse("[]", None) == []
    assert parse("['a', 1, None, ['b']]", None) == ["a"]     # non-strings (and nested lists) dropped
    assert parse("['a', 'a']", None) == ["a", "a"]           # the metrics dedupe, the parser keeps what was said
    for not_a_list in ("{'a': 1}", "{'a'}", "42", "'a'", "", "   ", "None"):
        assert parse(not_a_list, None) == [], not_a_list


def test_entity_list_parser_recovers_cut_off_and_wrapped_lists():
    parse = parsers.get("entity_list")
    assert parse("['a', 'b', 'c", None) == ["a", "b"]              # cut off inside the last string
    assert parse("['a', 'b'", None) == ["a", "b"]                  # cut off before the closing bracket
    assert parse("['a', 'b']\nSentence: next one", None) == ["a", "b"]   # generation ran on
    assert parse("['a'] 'b'", None) == ["a"]                        # strings after the list are not in it
    assert parse("Diseases: [\"it's\", 'x\\'y'] ok", None) == ["it's", "x'y"]  # escapes decoded
    assert parse("[['a'], 'b'", None) == ["a"]                     # nested and cut off: the first string list
    assert parse("garbage ]] [[ '", None) == []
    assert parse("['a' 'b', 'c']", None) == ["ab", "c"]             # implicit concatenation is still a literal


def test_entity_list_parser_never_runs_or_raises_on_hostile_input(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("model output was executed")

    monkeypatch.setattr(os, "system", boom)
    parse = parsers.get("entity_list")
    assert parse("__import__('os').system('x')", None) == []
    assert parse("[__import__('os').system('x')]", None) == []
    assert parse("['a', __import__('os').system('x')]", None) == ["a"]
    assert parse("[" * 100_000, None) == []
    assert parse("(" * 5_000 + ")" * 5_000, None) == []
    assert parse("\x00['a']", None) == ["a"]
    long = "['a'," + " 'b'," * 5_000 + "]"                         # over the 10,000-character cap
    out = parse(long, None)
    assert out[:3] == ["a", "b", "b"] and len(out) < 5_001
