"""Seeded, stratified, group-aware splits for data that ships without an official one.

`stratified_split(rows, fractions, seed, by=..., group=...)` works as follows.

1. Rows are first collected into groups by `group(row)`, e.g. the case report several questions are asked about:
   rows of one group never straddle splits, which would leak the document from train into test. Without `group`,
   every row is its own group (keyed by its position in the input). Group keys are compared as strings.
2. Each group's stratum is `by` of its first row (rows in input order); strata are compared as strings.
3. Within each stratum, groups are sorted by key and shuffled with `random.Random(seed)`: one RNG, seeded once,
   with the strata visited in sorted order (so adding or removing a stratum reshuffles the strata after it).
4. Each stratum's shuffled groups are cut into the splits, in the order the splits are given in `fractions`
   (e.g. train, validation, test), by the fractions of its *group count*, with largest-remainder rounding (each split
   gets the floor of its share; the groups left over go to the splits with the largest remainders, ties to the
   earlier split). Every split thus gets its share of every stratum, within one group.
5. Within each split, rows are returned in their original input order.

The fractions must be positive and sum to 1, else ValueError. The result depends only on the rows (their order, their
`by` and `group` values) and the seed, not on hashing or dict ordering, so the same data and seed give the same split
on any machine. Note that the fractions apply to groups, not rows: when groups differ in size, the row counts of the
splits follow the fractions only approximately. `split_summary(splits, by)` counts rows per split and stratum, for
logging.
"""
from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from fractions import Fraction
from typing import Callable


def _check_fractions(fractions: dict[str, float]) -> list[Fraction]:
    if not isinstance(fractions, dict) or not fractions:
        raise ValueError(f"split fractions must be a non-empty mapping {{split: fraction}}, got {fractions!r}")
    bad = {k: v for k, v in fractions.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0}
    if bad:
        raise ValueError(f"split fractions must be positive numbers; bad: {bad} (all: {fractions})")
    total = math.fsum(fractions.values())
    if abs(total - 1) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions} (sum {total:g})")
    # the decimal value as written (0.1, not the nearest binary float), so that 10 groups * 0.7 is exactly 7
    exact = [Fraction(repr(float(v))) for v in fractions.values()]
    return [f / sum(exact) for f in exact]


def _counts(n: int, fractions: list[Fraction]) -> list[int]:
    """Largest-remainder rounding of n * fractions (which sum to 1) to integers summing to n."""
    raw = [n * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def stratified_split(rows: list[dict], fractions: dict[str, float], seed: int, by: Callable[[dict], object],
                     group: Callable[[dict], object] | None = None) -> dict[str, list[dict]]:
    """{split: rows} by the rule in the module docstring; every row lands in exactly one split."""
    shares = _check_fractions(fractions)
    members: dict[object, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        members[i if group is None else str(group(row))].append(i)
    strata: dict[str, list] = defaultdict(list)
    for key, idx in members.items():
        strata[str(by(rows[idx[0]]))].append(key)
    rng = random.Random(seed)
    names = list(fractions)
    where: list[str | None] = [None] * len(rows)
    for stratum in sorted(strata):
        keys = sorted(strata[stratum])
        rng.shuffle(keys)
        at = 0
        for name, count in zip(names, _counts(len(keys), shares)):
            for key in keys[at: at + count]:
                for i in members[key]:
                    where[i] = name
            at += count
    return {name: [row for row, split in zip(rows, where) if split == name] for name in names}


def split_summary(splits: dict[str, list[dict]], by: Callable[[dict], object]) -> dict:
    """{split: {"n": rows, "strata": {stratum: rows}}} (strata sorted), for logging."""
    return {name: {"n": len(rows), "strata": dict(sorted(Counter(str(by(r)) for r in rows).items()))}
            for name, rows in splits.items()}
