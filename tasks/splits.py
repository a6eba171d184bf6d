"""Seeded, stratified, group-aware splits for data that ships without an official one.

Rows are first collected into groups (`group(row)`, e.g. the case report several questions are asked about: rows of
one group never straddle splits, which would leak the document from train into test). A group's stratum is `by` of
its first row. Within each stratum, groups are sorted by key and shuffled with one `random.Random(seed)` (strata
visited in sorted order), then cut into the splits by the fractions with largest-remainder rounding of group counts
(split order as given, e.g. train, validation, test), so each split gets its share of every stratum. Rows keep their
input order within a split. Same rows + seed -> the same split, on any machine.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Callable


def _counts(n: int, fractions: list[float]) -> list[int]:
    raw = [n * f for f in fractions]
    counts = [int(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def stratified_split(rows: list[dict], fractions: dict[str, float], seed: int, by: Callable[[dict], str],
                     group: Callable[[dict], str] | None = None) -> dict[str, list[dict]]:
    if not fractions or any(f <= 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-9:
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    group = group or (lambda r: str(id(r)))
    members: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        members[str(group(row))].append(i)
    strata: dict[str, list[str]] = defaultdict(list)
    for key, idx in members.items():
        strata[str(by(rows[idx[0]]))].append(key)
    rng = random.Random(seed)
    where: dict[int, str] = {}
    names = list(fractions)
    for stratum in sorted(strata):
        keys = sorted(strata[stratum])
        rng.shuffle(keys)
        at = 0
        for name, count in zip(names, _counts(len(keys), list(fractions.values()))):
            for key in keys[at: at + count]:
                for i in members[key]:
                    where[i] = name
            at += count
    return {name: [row for i, row in enumerate(rows) if where[i] == name] for name in names}


def split_summary(splits: dict[str, list[dict]], by: Callable[[dict], str]) -> dict:
    return {name: {"n": len(rows), "strata": dict(sorted(Counter(str(by(r)) for r in rows).items()))}
            for name, rows in splits.items()}
