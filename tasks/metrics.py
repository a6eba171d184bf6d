"""Task metrics over parsed predictions and gold answers; each returns a plain float in [0, 1] (kappa in [-1, 1]).

A metric is `fn(preds, golds, *, examples=None, **params) -> float`: `examples` are the test rows in the order of
`preds` (only the seqeval metrics read them), `params` come from the task's metric entry (e.g. `weights: linear`).
Each metric names its params explicitly, so a misspelt one is a TypeError rather than silently ignored.
Every metric is registered with its `direction` ("max": higher is better) and `best`, the score of a perfect answer
set (the maximum, or for a "min" metric the minimum), read back with `METRICS.meta(name)`. A metric that assumes
something of the task (its parser's output type, its declared labels) also registers `check(task, params)`, which
returns what is wrong (one sentence) or None: the registry calls it for every task declaring the metric, so a metric
on the wrong task is refused at registration rather than scoring perfect answers below `best`.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

from scd.registry import Registry

METRICS: Registry = Registry("metric")
register = METRICS.register
get = METRICS.get


LIST_PARSERS = ("entity_list", "python_list")  # the parsers whose output is a list of entity strings


def _parses_lists(task) -> bool:
    return getattr(task, "parser", None) in LIST_PARSERS


def _label_metric_check(task, params) -> str | None:
    if _parses_lists(task):
        return "compares single labels or strings, but the task's parser 'entity_list' gives lists of entities"
    return None


def _entity_metric_check(task, params) -> str | None:
    if not _parses_lists(task):
        return (f"compares lists of entity strings, but the task's parser {getattr(task, 'parser', None)!r} gives "
                f"single strings; use parser 'entity_list'")
    return None


def _check_lengths(preds: Sequence, golds: Sequence) -> None:
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold answers")


@register("exact_match", direction="max", best=1.0)
def exact_match(preds: list[str], golds: list[str], *, examples=None) -> float:
    _check_lengths(preds, golds)
    return float(sum(p == g for p, g in zip(preds, golds)) / len(golds)) if golds else 0.0


# Accuracy over a closed label set is exact match of the parsed label; the separate name says what is reported.
register("accuracy", direction="max", best=1.0, check=_label_metric_check)(exact_match)


def _macro_f1_check(task, params) -> str | None:
    if not params.get("labels") and not getattr(task, "labels", None):
        return "averages over the task's categories: declare `labels`"
    return _label_metric_check(task, params)


@register("macro_f1", direction="max", best=1.0, check=_macro_f1_check)
def macro_f1(preds: list[str], golds: list[str], *, examples=None, labels: Sequence[str] | None = None) -> float:
    """The unweighted mean of per-label F1 over the declared labels (`labels`, the task's; default
    sorted(set(golds))) that occur among the gold answers or the predictions: a label the model predicts that no
    gold answer has scores 0 and counts (taking the labels from the golds alone would drop it, and with it those
    wrong predictions' weight), a label absent from both says nothing about the model and is left out (so perfect
    answers score 1 on a test split that lacks a label). A prediction outside `labels` (an unparseable answer) is
    no label, only a miss of its gold label. When every prediction is a declared label this is sklearn's default
    f1_score(golds, preds, average="macro"). A gold answer outside `labels` is a ValueError."""
    _check_lengths(preds, golds)
    labels = list(labels) if labels is not None else sorted(set(golds))
    stray = sorted({g for g in golds if g not in labels})
    if stray:
        raise ValueError(f"macro_f1: gold answers {stray[:5]} are not among the declared labels {labels}")
    seen = set(golds) | set(preds)
    f1s = []
    for label in (x for x in labels if x in seen):
        tp = sum(p == label and g == label for p, g in zip(preds, golds))
        fp = sum(p == label and g != label for p, g in zip(preds, golds))
        fn = sum(p != label and g == label for p, g in zip(preds, golds))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(sum(f1s) / len(f1s)) if f1s else 0.0


# --- Cohen's kappa -------------------------------------------------------------------------------------------------

def _kappa_weight(i: int, j: int, k: int, weights: str | None) -> float:
    """Disagreement weight of label indices i, j out of k declared labels, index k meaning 'not a label'.

    Weights are scaled so the largest is 1: kappa is unchanged by scaling, and it lets an invalid prediction
    take the maximal disagreement 1 against every label under any weighting."""
    if i == j:
        return 0.0
    if i == k or j == k or weights is None:
        return 1.0
    d = abs(i - j) / max(k - 1, 1)
    return d if weights == "linear" else d * d


def _kappa_check(task, params) -> str | None:
    if params.get("weights") not in (None, "linear", "quadratic"):
        return f"takes weights None, 'linear' or 'quadratic', got {params['weights']!r}"
    if params.get("outside", "max") not in KAPPA_OUTSIDE:
        return f"takes outside {' or '.join(map(repr, KAPPA_OUTSIDE))}, got {params['outside']!r}"
    if not params.get("labels") and not getattr(task, "labels", None):
        return "needs the task's categories: declare `labels` (in order, for weighted kappa)"
    return _label_metric_check(task, params)


KAPPA_OUTSIDE = ("max", "sklearn")  # how cohen_kappa places a prediction outside the declared labels


@register("cohen_kappa", direction="max", best=1.0, check=_kappa_check)
def cohen_kappa(preds: list[str], golds: list[str], *, examples=None, labels: Sequence[str] | None = None,
                weights: str | None = None, outside: str = "max") -> float:
    """Cohen's kappa of predictions against golds, optionally weighted ("linear" / "quadratic").

    `labels` is the declared, ordered label list (default: sorted(set(golds))); for weighted kappa the distance of
    two labels is their distance in this order. A prediction outside `labels` (unparseable output, parsed as "";
    a letter the question does not offer), with `outside="max"`, is one extra category that disagrees maximally
    (weight 1, the weight of the two farthest labels) with every label. With `outside="sklearn"` it is scored as
    JMED-LLM's scorer does (sklearn's cohen_kappa_score on the parsed answers, with no labels given): every
    category seen among golds and predictions, an unparsed answer being the string "None" (upstream's parser
    output), sorted, weighted by distance in that sorted order ("E" next to "D", "None" after the letters). The two
    agree when every prediction is a declared label, and unweighted they always agree. On predictions within
    `labels` the result equals `sklearn.metrics.cohen_kappa_score(..., labels=labels)`.
    Edge cases: no samples -> 0.0; expected disagreement 0 (every gold and prediction the same single label,
    where sklearn gives nan) -> 1.0 if preds == golds else 0.0. A gold outside `labels` is a ValueError.
    """
    if outside not in KAPPA_OUTSIDE:
        raise ValueError(f"cohen_kappa: outside must be one of {KAPPA_OUTSIDE}, got {outside!r}")
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"cohen_kappa: weights must be None, 'linear' or 'quadratic', got {weights!r}")
    _check_lengths(preds, golds)
    if not golds:
        return 0.0
    labels = list(labels) if labels is not None else sorted(set(golds))
    if len(set(labels)) != len(labels):
        raise ValueError(f"cohen_kappa: duplicate labels in {labels}")
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    stray = sorted({g for g in golds if g not in index})
    if stray:
        raise ValueError(f"cohen_kappa: gold answers {stray[:5]} are not among the declared labels {labels}")
    n = len(golds)
    if outside == "sklearn":
        raw = [p if p in index else (p or "None") for p in preds]
        seen = sorted(set(golds) | set(raw))
        index, k = {label: i for i, label in enumerate(seen)}, len(seen) + 1  # every category is a label here

        def weight(i: int, j: int) -> float:
            return 0.0 if i == j else 1.0 if weights is None else abs(i - j) if weights == "linear" else (i - j) ** 2
        p_idx = [index[p] for p in raw]
    else:
        def weight(i: int, j: int) -> float:
            return _kappa_weight(i, j, k, weights)
        p_idx = [index.get(p, k) for p in preds]
    g_idx = [index[g] for g in golds]
    observed = sum(weight(g, p) for g, p in zip(g_idx, p_idx)) / n
    g_freq = [g_idx.count(i) / n for i in range(k + 1)]
    p_freq = [p_idx.count(i) / n for i in range(k + 1)]
    expected = sum(g_freq[i] * p_freq[j] * weight(i, j) for i in range(k + 1) for j in range(k + 1))
    if expected <= 1e-12:
        return 1.0 if list(preds) == list(golds) else 0.0
    return float(1.0 - observed / expected)


# --- JMED-LLM entity F1 (set-based, averaged over samples) ---------------------------------------------------------

def _entity_set(entities, where: str) -> set[str]:
    """The sample's entities as a set of stripped, non-empty strings.

    Empty strings must go: "" is a substring of everything and would make every partial match succeed."""
    if isinstance(entities, str):
        raise TypeError(f"{where}: expected a list of entity strings per sample, got the string {entities[:40]!r}")
    return {e.strip() for e in entities if isinstance(e, str) and e.strip()}


def _sample_f1(pred: set[str], gold: set[str], match: Callable[[str, str], bool]) -> float:
    """F1 of one sample. Nothing to find and nothing claimed is a perfect answer; exactly one side empty scores 0
    (upstream divides by zero on an empty gold)."""
    if not gold or not pred:
        return 1.0 if not gold and not pred else 0.0
    recall = sum(any(match(p, g) for p in pred) for g in gold) / len(gold)
    precision = sum(any(match(p, g) for g in gold) for p in pred) / len(pred)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _mean_entity_f1(preds, golds, match, name: str) -> float:
    _check_lengths(preds, golds)
    if not golds:
        return 0.0
    scores = [_sample_f1(_entity_set(p, f"{name} prediction {i}"), _entity_set(g, f"{name} gold {i}"), match)
              for i, (p, g) in enumerate(zip(preds, golds))]
    return float(sum(scores) / len(scores))


@register("entity_f1_exact", direction="max", best=1.0, check=_entity_metric_check)
def entity_f1_exact(preds: list[list[str]], golds: list[list[str]], *, examples=None) -> float:
    """JMED-LLM's exact_f1_score (sociocom/JMED-LLM src/utils.py): per sample, precision and recall of the
    prediction set against the gold set under string equality, F1, averaged over samples. Duplicates and
    blank entities are dropped and entities are stripped; the empty-gold cases follow `_sample_f1`."""
    return _mean_entity_f1(preds, golds, lambda p, g: p == g, "entity_f1_exact")


def _overlaps(p: str, g: str) -> bool:
    return p in g or g in p


@register("entity_f1_partial", direction="max", best=1.0, check=_entity_metric_check)
def entity_f1_partial(preds: list[list[str]], golds: list[list[str]], *, examples=None) -> float:
    """JMED-LLM's partial-match F1 as the benchmark describes it: a gold entity is recalled if some prediction is a
    substring of it or contains it; precision is the share of predictions that are a substring of, or contain,
    some gold entity. Per-sample F1, averaged over samples.

    Upstream's partial_f1_score differs: it tests `answer_v in predict` / `predict_v in answer` against the
    *sets*, i.e. exact membership, not substrings, and the second test does not involve `answer_v`, so once any
    prediction equals any gold every gold counts as recalled; it also uses that gold count as the precision
    numerator (precision can exceed 1). We count recalled golds and matching predictions separately.
    """
    return _mean_entity_f1(preds, golds, _overlaps, "entity_f1_partial")


# --- seqeval entity-level scores (NCBI-disease) ---------------------------------------------------------------------

# NCBI-disease's CoNLL tokens are each either a run of word characters or one punctuation character ("tumour-
# suppressor" is three tokens, "(APC)" three); every token of the train/devel/test files passes this pattern
# unchanged, so a predicted mention tokenized with it lines up with the sentence however the model spaced it.
_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize_mention(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _mention_spans(entities) -> list[tuple[str, ...]]:
    """The distinct, non-empty token spans of the predicted mention strings, in the model's order."""
    return [s for s in dict.fromkeys(tuple(tokenize_mention(e)) for e in entities if isinstance(e, str)) if s]


def _occurs(tokens: list[str], span: tuple[str, ...]) -> bool:
    n = len(span)
    return any(tuple(tokens[i:i + n]) == span for i in range(len(tokens) - n + 1))


def absent_mentions(tokens: list[str], entities: list[str]) -> list[tuple[str, ...]]:
    """The predicted mentions (distinct token spans, as `entities_to_bio` reads them) that occur nowhere in the
    sentence: they cannot become tags, so the lenient metrics never see them; the strict ones count each as a false
    positive."""
    return [span for span in _mention_spans(entities) if not _occurs(tokens, span)]


def entities_to_bio(tokens: list[str], entities: list[str], entity_type: str) -> list[str]:
    """IOB2 tags over `tokens` for the predicted mention strings.

    Each mention is tokenized like the corpus (`_TOKEN`) and matched by exact, case-sensitive token equality.
    Every non-overlapping occurrence is tagged, because NCBI-disease annotates a repeated mention at each
    occurrence; longer mentions are placed first so a shorter one never splits a longer match (of two equally
    long overlapping mentions, the one listed first wins). A mention found nowhere in the sentence adds no tag
    (`absent_mentions` lists them: the strict metrics count them as false positives).
    """
    tags = ["O"] * len(tokens)
    spans = _mention_spans(entities)
    for span in sorted(spans, key=len, reverse=True):  # a stable sort keeps the model's order among equal lengths
        n, i = len(span), 0
        while i + n <= len(tokens):
            if tuple(tokens[i:i + n]) == span and all(t == "O" for t in tags[i:i + n]):
                tags[i:i + n] = [f"B-{entity_type}"] + [f"I-{entity_type}"] * (n - 1)
                i += n
            else:
                i += 1
    return tags


def bio_types(labels) -> set[str]:
    """The entity types of a BIO tag set ({"Disease"} for [O, B-Disease, I-Disease])."""
    return {tag[2:] for tag in labels if tag[:2] in ("B-", "I-")}


def _seqeval_check(task, params) -> str | None:
    """The seqeval metrics tag untyped predicted mentions with the one `entity_type`: the task's labels must be a BIO
    tag set of exactly that type (gold mentions of another type could never be matched)."""
    entity_type = params.get("entity_type", "Disease")
    labels = getattr(task, "labels", None)
    if not labels:
        return "scores BIO tags: declare the task's tag set as `labels` (e.g. [O, B-Disease, I-Disease])"
    odd = [tag for tag in labels if tag != "O" and tag[:2] not in ("B-", "I-")]
    if odd:
        return f"scores BIO tags, but the task's labels {odd} are not O, B-<type> or I-<type>"
    types = sorted(bio_types(labels))
    if types != [entity_type]:
        return (f"scores one entity type ({entity_type!r}: predicted mentions carry no type), but the task's labels "
                f"have the type(s) {types}; give the metric the task's one type (`entity_type: ...`), or split the "
                f"task by type")
    return _entity_metric_check(task, params)


def _tags(preds, golds, examples, entity_type: str, name: str) -> tuple[list, list, int]:
    """Gold and predicted IOB2 tag sequences of the test rows, and the number of predicted mentions that occur
    nowhere in their sentence."""
    _check_lengths(preds, golds)
    if examples is None:
        raise ValueError(f"{name} needs the test rows (examples=...) for their tokens and gold BIO tags")
    _check_lengths(preds, examples)
    y_true, y_pred, absent = [], [], 0
    for i, (pred, ex) in enumerate(zip(preds, examples)):
        if isinstance(pred, str):
            raise TypeError(f"{name}: prediction {i} should be a list of mention strings, got {pred[:40]!r}")
        other = sorted(bio_types(ex["tags"]) - {entity_type})
        if other:
            raise ValueError(f"{name}: test row {i} has gold mentions of type(s) {other}, but the metric scores only "
                             f"{entity_type!r} mentions (its entity_type); perfect answers would score below 1. "
                             f"Declare the task's one entity type")
        y_true.append(list(ex["tags"]))
        y_pred.append(entities_to_bio(ex["tokens"], pred, entity_type))
        absent += len(absent_mentions(ex["tokens"], pred))
    return y_true, y_pred, absent


def _seqeval(score_fn, preds, golds, examples, entity_type: str, name: str) -> float:
    y_true, y_pred, _ = _tags(preds, golds, examples, entity_type, name)
    return float(score_fn(y_true, y_pred, zero_division=0)) if y_true else 0.0


def strict_entity_scores(preds, golds, examples, entity_type: str = "Disease",
                         name: str = "seqeval") -> dict[str, float]:
    """Entity-level micro precision, recall and F1 as seqeval's default mode counts them (an entity is its type and
    token span; correct = in gold and predicted), except that every predicted mention found nowhere in its sentence
    is one more predicted entity, a false positive. zero_division=0."""
    from seqeval.metrics.sequence_labeling import get_entities  # imported on use: only the NER task needs it

    y_true, y_pred, absent = _tags(preds, golds, examples, entity_type, name)
    true, pred = set(get_entities(y_true)), set(get_entities(y_pred))
    correct, n_pred = len(true & pred), len(pred) + absent
    precision = correct / n_pred if n_pred else 0.0
    recall = correct / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


_SEQEVAL_DOC = ("Entity-level (IOB2, seqeval's default mode) micro {what} over the test set: predicted mention "
                "strings -> tags by `entities_to_bio`, gold tags from `examples[i]['tags']`; `golds` is only checked "
                "for length. zero_division=0. {absent}")


def _seqeval_metric(name: str, fn_name: str) -> Callable:
    """The strict metric: a predicted mention that occurs nowhere in its sentence is a false positive."""
    what = fn_name.split("_")[0]

    def metric(preds: list[list[str]], golds, *, examples: list[dict] | None = None,
               entity_type: str = "Disease") -> float:
        return float(strict_entity_scores(preds, golds, examples, entity_type, name)[what])

    metric.__name__ = name
    metric.__doc__ = _SEQEVAL_DOC.format(what=what, absent="A predicted mention that occurs nowhere in its sentence "
                                                           "counts as a false positive (strict).")
    return register(name, direction="max", best=1.0, check=_seqeval_check)(metric)


def _lenient_metric(name: str, fn_name: str) -> Callable:
    """The lenient metric: seqeval itself on the tags, so a mention absent from its sentence counts for nothing."""
    def metric(preds: list[list[str]], golds, *, examples: list[dict] | None = None,
               entity_type: str = "Disease") -> float:
        import seqeval.metrics  # imported on use: only the NER task needs it

        return _seqeval(getattr(seqeval.metrics, fn_name), preds, golds, examples, entity_type, name)

    metric.__name__ = name
    metric.__doc__ = _SEQEVAL_DOC.format(what=fn_name.split("_")[0], absent="Lenient: a predicted mention that occurs "
                                         "nowhere in its sentence adds no tag, so it is neither a true nor a false "
                                         "positive (seqeval only sees tags).")
    return register(name, direction="max", best=1.0, check=_seqeval_check)(metric)


seqeval_f1 = _seqeval_metric("seqeval_f1", "f1_score")
seqeval_precision = _seqeval_metric("seqeval_precision", "precision_score")
seqeval_recall = _seqeval_metric("seqeval_recall", "recall_score")  # absent mentions do not change recall
seqeval_f1_lenient = _lenient_metric("seqeval_f1_lenient", "f1_score")
seqeval_precision_lenient = _lenient_metric("seqeval_precision_lenient", "precision_score")


# The seqeval metrics' counts per test row: the corpus scores are functions of their sums over the rows, which the
# evaluation keeps in each row's record so that a bootstrap can recompute the corpus score on resampled rows.
ENTITY_COUNT_METRICS = ("seqeval_f1", "seqeval_precision", "seqeval_recall", "seqeval_f1_lenient",
                        "seqeval_precision_lenient")


def entity_counts(pred, example: dict, entity_type: str = "Disease") -> dict[str, int]:
    """One test row's entity counts as the seqeval metrics count them: `gold` entities of its tags, `predicted`
    entities of the predicted tags (`entities_to_bio`), `correct` (in both, same type and span) and `absent`
    (predicted mentions found nowhere in the sentence). Summed over the rows: strict precision = correct /
    (predicted + absent), recall = correct / gold; lenient precision = correct / predicted (entities never span two
    rows, so the corpus counts are these sums)."""
    from seqeval.metrics.sequence_labeling import get_entities  # imported on use: only the NER task needs it

    y_true, y_pred, absent = _tags([pred], [None], [example], entity_type, "entity_counts")
    true, predicted = set(get_entities(y_true[0])), set(get_entities(y_pred[0]))
    return {"gold": len(true), "predicted": len(predicted), "correct": len(true & predicted), "absent": absent}
