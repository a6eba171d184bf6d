"""tasks/splits.py: seeded, stratified, group-aware splits."""
from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from tasks.splits import split_summary, stratified_split

FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}


def make_rows(seed: int = 0) -> list[dict]:
    """Documents with 1-4 questions each, in three strata of different sizes; a document's questions share its tag."""
    rng = random.Random(seed)
    rows = []
    for tag, n_docs in (("a", 40), ("b", 23), ("c", 7)):
        for d in range(n_docs):
            for q in range(rng.randint(1, 4)):
                rows.append({"id": f"{tag}{d}-{q}", "doc": f"{tag}-doc{d}", "tag": tag})
    rng.shuffle(rows)  # questions of one document are scattered through the input
    return rows


def by(row):
    return row["tag"]


def group(row):
    return row["doc"]


def ids(splits):
    return {name: [r["id"] for r in rows] for name, rows in splits.items()}


def test_every_row_exactly_once_in_input_order():
    rows = make_rows()
    splits = stratified_split(rows, FRACTIONS, seed=1, by=by, group=group)
    assert list(splits) == ["train", "validation", "test"]
    seen = [id(r) for rows_ in splits.values() for r in rows_]
    assert len(seen) == len(set(seen)) == len(rows)
    assert set(seen) == {id(r) for r in rows}
    position = {id(r): i for i, r in enumerate(rows)}
    for rows_ in splits.values():
        order = [position[id(r)] for r in rows_]
        assert order == sorted(order)


def test_no_group_straddles_splits():
    splits = stratified_split(make_rows(), FRACTIONS, seed=3, by=by, group=group)
    home = defaultdict(set)
    for name, rows_ in splits.items():
        for r in rows_:
            home[r["doc"]].add(name)
    assert all(len(names) == 1 for names in home.values()), {d: n for d, n in home.items() if len(n) > 1}


@pytest.mark.parametrize("seed", [0, 1, 7, 2024])
def test_proportions_per_stratum_within_one_group(seed):
    rows = make_rows(seed)
    splits = stratified_split(rows, FRACTIONS, seed=seed, by=by, group=group)
    docs_in = {name: Counter() for name in splits}
    for name, rows_ in splits.items():
        for tag, doc in {(r["tag"], r["doc"]) for r in rows_}:
            docs_in[name][tag] += 1
    total = Counter(tag for tag, _ in {(r["tag"], r["doc"]) for r in rows})
    assert total == {"a": 40, "b": 23, "c": 7}
    for tag, n in total.items():
        assert sum(docs_in[name][tag] for name in splits) == n
        for name, fraction in FRACTIONS.items():
            assert abs(docs_in[name][tag] - n * fraction) < 1, (tag, name, docs_in[name][tag], n * fraction)


def test_largest_remainder_counts():
    # one stratum of n single-row groups, 0.7/0.1/0.2
    for n, expected in ((10, [7, 1, 2]),
                        # 5.6/0.8/1.6: floors 5/0/1, 2 left: validation (.8), then train and test tie at .6 -> train
                        # (in binary floats 8 * 0.7 has the smaller remainder and test would win the tie)
                        (8, [6, 1, 1]),
                        (2, [2, 0, 0]),  # 1.4/0.2/0.4: train and test tie at .4 -> train
                        (1, [1, 0, 0])):
        rows = [{"k": i, "s": "x"} for i in range(n)]
        splits = stratified_split(rows, FRACTIONS, seed=0, by=lambda r: r["s"])
        assert [len(v) for v in splits.values()] == expected, n
    # 3 groups in halves of a 0.5/0.25/0.25 rule: floors 1/0/0, remainders .5/.75/.75 -> ties go to the earlier split
    rows = [{"k": i, "s": "x"} for i in range(3)]
    splits = stratified_split(rows, {"train": 0.5, "validation": 0.25, "test": 0.25}, seed=0, by=lambda r: r["s"])
    assert [len(v) for v in splits.values()] == [1, 1, 1]
    rows = [{"k": i, "s": "x"} for i in range(2)]
    splits = stratified_split(rows, {"train": 0.5, "validation": 0.25, "test": 0.25}, seed=0, by=lambda r: r["s"])
    assert [len(v) for v in splits.values()] == [1, 1, 0]


def test_same_seed_same_split_different_seed_different_split():
    rows = make_rows()
    first = ids(stratified_split(rows, FRACTIONS, seed=5, by=by, group=group))
    again = ids(stratified_split([dict(r) for r in rows], FRACTIONS, seed=5, by=by, group=group))
    assert first == again
    other = ids(stratified_split(rows, FRACTIONS, seed=6, by=by, group=group))
    assert first != other
    assert sorted(sum(first.values(), [])) == sorted(sum(other.values(), []))


def test_deterministic_regardless_of_key_order_in_rows_and_fractions_order_matters():
    rows = make_rows()
    reordered = [dict(reversed(list(r.items()))) for r in rows]  # same rows, dict keys in another order
    assert ids(stratified_split(rows, FRACTIONS, 2, by=by, group=group)) == \
        ids(stratified_split(reordered, FRACTIONS, 2, by=by, group=group))


def test_without_group_each_row_is_its_own_group_and_deterministic():
    rows = [{"i": i, "label": "pos" if i % 3 else "neg"} for i in range(90)]
    a = stratified_split(rows, FRACTIONS, seed=11, by=lambda r: r["label"])
    b = stratified_split([dict(r) for r in rows], FRACTIONS, seed=11, by=lambda r: r["label"])
    assert [[r["i"] for r in v] for v in a.values()] == [[r["i"] for r in v] for v in b.values()]
    summary = split_summary(a, lambda r: r["label"])
    assert summary == {"train": {"n": 63, "strata": {"neg": 21, "pos": 42}},
                       "validation": {"n": 9, "strata": {"neg": 3, "pos": 6}},
                       "test": {"n": 18, "strata": {"neg": 6, "pos": 12}}}


def test_stratum_is_taken_from_the_first_row_of_a_group():
    rows = [{"doc": "d1", "tag": "x"}, {"doc": "d1", "tag": "y"}, {"doc": "d2", "tag": "y"}]
    splits = stratified_split(rows, {"train": 0.5, "test": 0.5}, seed=0, by=by, group=group)
    summary = split_summary(splits, by)
    # d1 is one group in stratum x (its first row), d2 one group in stratum y: each goes to train (largest remainder
    # tie -> the earlier split), so nothing is in test
    assert summary["train"] == {"n": 3, "strata": {"x": 1, "y": 2}}
    assert summary["test"] == {"n": 0, "strata": {}}


@pytest.mark.parametrize("fractions", [
    {"train": 0.8, "test": 0.3},           # sums to 1.1
    {"train": 0.5, "test": 0.4},           # sums to 0.9
    {"train": 1.2, "test": -0.2},          # negative
    {"train": 1.0, "test": 0.0},           # zero
    {},                                    # empty
    {"train": "0.5", "test": 0.5},         # not a number
])
def test_fractions_validation(fractions):
    with pytest.raises(ValueError, match="fractions must"):
        stratified_split(make_rows(), fractions, seed=0, by=by, group=group)


def test_fractions_summing_to_one_in_floats_are_accepted():
    rows = make_rows()
    for fractions in ({"train": 0.8, "validation": 0.1, "test": 0.1}, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3},
                      {"all": 1}):
        splits = stratified_split(rows, fractions, seed=0, by=by, group=group)
        assert sum(len(v) for v in splits.values()) == len(rows)


def reference_split(rows, fractions, seed, by, group):
    """The documented rule, written out step by step (largest remainder in exact decimal arithmetic)."""
    from fractions import Fraction
    groups = {}
    for i, r in enumerate(rows):
        groups.setdefault(str(group(r)), []).append(i)
    strata = {}
    for key, members in groups.items():
        strata.setdefault(str(by(rows[members[0]])), []).append(key)
    rng = random.Random(seed)
    split_of = {}
    for stratum in sorted(strata):
        keys = sorted(strata[stratum])
        rng.shuffle(keys)
        shares = [len(keys) * Fraction(str(f)) for f in fractions.values()]
        counts = [int(s) for s in shares]
        left = len(keys) - sum(counts)
        for i in sorted(range(len(shares)), key=lambda i: (counts[i] - shares[i], i))[:left]:
            counts[i] += 1
        at = 0
        for name, count in zip(fractions, counts):
            for key in keys[at:at + count]:
                split_of[key] = name
            at += count
    return {name: [r["id"] for r in rows if split_of[str(group(r))] == name] for name in fractions}


@pytest.mark.parametrize("seed", [0, 42])
def test_matches_the_documented_rule(seed):
    rows = make_rows(seed)
    assert ids(stratified_split(rows, FRACTIONS, seed, by=by, group=group)) == \
        reference_split(rows, FRACTIONS, seed, by, group)
