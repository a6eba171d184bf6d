"""Task metrics over parsed predictions and gold answers; each returns a plain float in [0, 1]."""
from __future__ import annotations

from scd.registry import Registry

METRICS: Registry = Registry("metric")
register = METRICS.register
get = METRICS.get


@register("exact_match")
def exact_match(preds: list[str], golds: list[str]) -> float:
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold answers")
    return float(sum(p == g for p, g in zip(preds, golds)) / len(golds)) if golds else 0.0


# Accuracy over a closed label set is exact match of the parsed label; the separate name says what is reported.
register("accuracy")(exact_match)


@register("macro_f1")
def macro_f1(preds: list[str], golds: list[str]) -> float:
    labels = sorted(set(golds))
    f1s = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(preds, golds))
        fp = sum(p == label and g != label for p, g in zip(preds, golds))
        fn = sum(p != label and g == label for p, g in zip(preds, golds))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(sum(f1s) / len(f1s)) if f1s else 0.0
