"""The token-level divergences of the baseline zoo (baselines/*.py): golden values computed here with numpy (float64)
from the formulas in docs/baselines.md, hand-derived closed forms, agreement with TRL's generalized JSD, and the
properties every registered divergence must have, whoever registered it: the generic check of
scd/distill/checks.py (finite, zero at equality, non-negative, gradient only into the student, masked and empty
batches) and, here, finite on -inf logits, padding- and temperature-consistent, float32 for bf16 logits."""
import math
import os

import numpy as np
import pytest
import torch

from baselines.akl import head_mask, head_tail_weights
from scd.cli import main as scd_main
from scd.distill.checks import NotCheckable, check_divergence, divergences, not_checkable
from scd.distill.checks import main as check_main
from scd.distill.losses import LOG_FLOOR
from scd.distill.parts import hyperparameters
from scd.registry import Registry
from scd.tokens import masked_mean

DIVERGENCES = divergences()  # the registry with every baseline module and plugin loaded
ALL = sorted(DIVERGENCES)
UNCHECKED = {n: not_checkable(n) for n in ALL if not_checkable(n)}  # name -> why the generic check cannot call it
CHECKABLE = [n for n in ALL if n not in UNCHECKED]

# The divergences with an independent numpy reference (np_divergence below), their hyperparameters' defaults, and
# other values of those hyperparameters, the ends included.
GOLDEN = ["fkl", "rkl", "jsd", "tvd", "sym_kl", "skew_kl", "skew_rkl", "akl"]
HYPERPARAMETERS = {"fkl": {}, "rkl": {}, "jsd": {"beta": 0.5}, "tvd": {}, "sym_kl": {}, "skew_kl": {"skew": 0.1},
                   "skew_rkl": {"skew": 0.1}, "akl": {"mu": 0.5}}
VARIANTS = [
    ("jsd", {"beta": 0.0}), ("jsd", {"beta": 1.0}), ("jsd", {"beta": 0.1}), ("jsd", {"beta": 0.9}),
    ("skew_kl", {"skew": 0.0}), ("skew_kl", {"skew": 0.5}), ("skew_rkl", {"skew": 0.0}), ("skew_rkl", {"skew": 0.5}),
    ("akl", {"mu": 0.1}), ("akl", {"mu": 0.9}),
]


def case_ids(cases):
    return [n + "".join(f"-{k}{v}" for k, v in o.items()) for n, o in cases]


GOLDEN_CASES = [(n, {}) for n in GOLDEN] + VARIANTS
golden_cases = pytest.mark.parametrize("name,opts", GOLDEN_CASES, ids=case_ids(GOLDEN_CASES))
# every registered divergence the generic check can call, at its defaults, plus the variants above
CASES = [(n, {}) for n in CHECKABLE] + VARIANTS
cases = pytest.mark.parametrize("name,opts", CASES, ids=case_ids(CASES))


def div(name):
    return DIVERGENCES.get(name)


def built(name, opts):
    """(callable, keyword options): a divergence function with its options, or an Objective built with them."""
    obj = div(name)
    return (obj(**opts), {}) if isinstance(obj, type) else (obj, opts)


def declares(name, prop):
    """A property the divergence does not disclaim (`fn.nonnegative = False` etc., see scd/distill/checks.py)."""
    return bool(getattr(div(name), prop, True))


# ---- independent float64 references --------------------------------------------------------------------------------

def np_softmax(z, tau=1.0):
    z = np.asarray(z, dtype=np.float64) / tau
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_kl(a, b):
    """sum a (log a - log b) over the last axis; a = 0 terms are 0; b = 0 with a > 0 read as log b = LOG_FLOOR
    (the pinned convention that keeps RKL-type values finite at -inf teacher logits)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        la = np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), 0.0)
        lb = np.where(b > 0, np.log(np.where(b > 0, b, 1.0)), LOG_FLOOR)
    return np.where(a > 0, a * (la - lb), 0.0).sum(-1)


def np_akl_weights(p, q, mu):
    order = sorted(range(len(p)), key=lambda v: -p[v])  # Python's sort is stable: ties keep vocabulary order
    head, mass = set(), 0.0
    for v in order:
        if mass < mu:
            head.add(v)
        mass += p[v]
    g_h = sum(abs(p[v] - q[v]) for v in head)
    g_t = sum(abs(p[v] - q[v]) for v in range(len(p)) if v not in head)
    return (0.5, 0.5) if g_h + g_t == 0 else (g_h / (g_h + g_t), g_t / (g_h + g_t))


def np_divergence(name, p, q, opts):
    """Per-position reference from the formulas of docs/baselines.md; p = teacher, q = student, [N, V]."""
    if name == "fkl":
        return np_kl(p, q)
    if name == "rkl":
        return np_kl(q, p)
    if name == "jsd":
        beta = opts.get("beta", 0.5)
        if beta == 0.0:
            return np_kl(p, q)
        if beta == 1.0:
            return np_kl(q, p)
        m = beta * p + (1 - beta) * q
        return beta * np_kl(p, m) + (1 - beta) * np_kl(q, m)
    if name == "tvd":
        return 0.5 * np.abs(p - q).sum(-1)
    if name == "sym_kl":
        return np_kl(p, q) + np_kl(q, p)
    if name == "skew_kl":
        a = opts.get("skew", 0.1)
        return np_kl(p, a * p + (1 - a) * q)
    if name == "skew_rkl":
        a = opts.get("skew", 0.1)
        return np_kl(q, (1 - a) * p + a * q)
    if name == "akl":
        out = []
        for pi, qi in zip(p, q):
            wh, wt = np_akl_weights(list(pi), list(qi), opts.get("mu", 0.5))
            out.append(wh * np_kl(pi, qi) + wt * np_kl(qi, pi))
        return np.array(out)
    raise KeyError(name)


# ---- golden values --------------------------------------------------------------------------------------------------

INF = math.inf
TEACHER = [[[1.0, -0.5, 2.0, 0.0], [0.3, 0.3, -1.2, 2.5], [4.0, -3.0, 0.0, 0.7]],
           [[-1.0, 0.0, 1.0, 2.0], [0.0, 0.5, -INF, 1.0], [2.0, 1.0, 0.5, -2.0]]]  # one -inf teacher logit
STUDENT = [[[0.5, 0.5, 1.0, -1.0], [1.0, -0.2, 0.0, 1.5], [0.0, 0.0, 0.0, 0.0]],
           [[0.0, 0.0, 0.0, 0.0], [-0.5, 1.0, 0.2, 0.3], [1.5, 1.5, -1.0, 0.0]]]
MASK = [[True, True, False], [True, True, True]]  # (0, 2) is padding


@golden_cases
@pytest.mark.parametrize("tau", [1.0, 0.7, 2.5])
def test_golden_values_against_numpy(name, opts, tau):
    s, t, m = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(MASK)
    got = div(name)(s, t, m, tau, **opts)
    assert got.shape == (2, 3) and got.dtype == torch.float32
    p = np_softmax(np.array(TEACHER).reshape(-1, 4), tau)
    q = np_softmax(np.array(STUDENT).reshape(-1, 4), tau)
    expected = np_divergence(name, p, q, opts).reshape(2, 3) * np.array(MASK)
    assert got[0, 2] == 0.0  # masked: exactly zero
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_closed_forms_by_hand():
    # teacher logits [0, ln 3] -> p = [1/4, 3/4]; student logits [0, 0] -> q = [1/2, 1/2]
    s, t, m = torch.zeros(1, 1, 2), torch.tensor([[[0.0, math.log(3.0)]]]), torch.ones(1, 1, dtype=torch.bool)
    fkl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)  # 0.1308
    rkl = 0.5 * math.log(4.0 / 3.0)  # 1/2 ln(1/2 / 1/4) + 1/2 ln(1/2 / 3/4)
    hand = {
        "fkl": fkl,
        "rkl": rkl,
        "tvd": 0.25,  # 0.5 * (|1/4 - 1/2| + |3/4 - 1/2|)
        "sym_kl": fkl + rkl,
        # M = [3/8, 5/8]
        "jsd": (0.5 * (0.25 * math.log(2 / 3) + 0.75 * math.log(6 / 5))
                + 0.5 * (0.5 * math.log(4 / 3) + 0.5 * math.log(4 / 5))),
        # M = 0.1 p + 0.9 q = [0.475, 0.525]
        "skew_kl": 0.25 * math.log(0.25 / 0.475) + 0.75 * math.log(0.75 / 0.525),
        # M = 0.9 p + 0.1 q = [0.275, 0.725]
        "skew_rkl": 0.5 * math.log(0.5 / 0.275) + 0.5 * math.log(0.5 / 0.725),
        # head = {token 1} (3/4 >= mu = 1/2); both gaps are 1/4 -> w_head = w_tail = 1/2
        "akl": 0.5 * (fkl + rkl),
    }
    assert math.isclose(rkl, 0.1438410, rel_tol=1e-6) and math.isclose(hand["jsd"], 0.0338221, rel_tol=1e-5)
    for name, value in hand.items():
        assert math.isclose(float(div(name)(s, t, m)), value, rel_tol=1e-5), name


def test_rkl_reads_zero_teacher_probability_as_log_floor():
    # p = [1/2, 1/2, 0], q = [1/3, 1/3, 1/3]: KL(q || p) is +inf; pinned: the p = 0 term is q (log q - LOG_FLOOR)
    s, t, m = torch.zeros(1, 1, 3), torch.tensor([[[0.0, 0.0, -INF]]]), torch.ones(1, 1, dtype=torch.bool)
    finite_part = 2 / 3 * math.log((1 / 3) / (1 / 2))
    floor_part = 1 / 3 * (math.log(1 / 3) - LOG_FLOOR)
    assert math.isclose(LOG_FLOOR, math.log(2.0 ** -126), rel_tol=1e-12)
    assert math.isclose(float(div("rkl")(s, t, m)), finite_part + floor_part, rel_tol=1e-5)
    # the forward direction is genuinely finite and ignores the p = 0 entry
    assert math.isclose(float(div("fkl")(s, t, m)), math.log(1.5), rel_tol=1e-5)
    # with a mixture on the right the value is finite mathematically, no floor involved
    a = 0.1
    srkl = 2 / 3 * math.log((1 / 3) / (0.9 * 0.5 + a / 3)) + 1 / 3 * math.log(1 / a)
    assert math.isclose(float(div("skew_rkl")(s, t, m, skew=a)), srkl, rel_tol=1e-5)


# ---- agreement with TRL's generalized JSD ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trl_gjsd():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDTrainer  # TRL is a dependency: no skip when it is missing

    return GKDTrainer.generalized_jsd_loss


@pytest.mark.parametrize("tau", [1.0, 2.0])
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_jsd_matches_trl(trl_gjsd, beta, tau):
    g = torch.Generator().manual_seed(7)
    s, t = 3 * torch.randn(3, 5, 11, generator=g), 3 * torch.randn(3, 5, 11, generator=g)
    labels = torch.randint(0, 11, (3, 5), generator=g)
    labels[0, :2] = -100
    labels[2, 3:] = -100
    mask = labels != -100
    ref = trl_gjsd(s, t, labels=labels, beta=beta, temperature=tau, reduction="batchmean")
    ours = masked_mean(div("jsd")(s, t, mask, tau, beta=beta), mask)
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-6), (float(ours), float(ref))
    if beta in (0.0, 1.0):  # TRL's ends: pure forward / reverse KL
        other = div("fkl" if beta == 0.0 else "rkl")(s, t, mask, tau)
        assert torch.equal(div("jsd")(s, t, mask, tau, beta=beta), other)


# ---- the registry --------------------------------------------------------------------------------------------------

def test_registry_lists_every_divergence_with_its_hyperparameters_reference_and_doc():
    assert set(GOLDEN) <= set(ALL) and set(HYPERPARAMETERS) == set(GOLDEN)
    for name in GOLDEN:
        assert hyperparameters(div(name)) == HYPERPARAMETERS[name], name
    for name in ALL:
        assert isinstance(hyperparameters(div(name)), dict), name
        assert DIVERGENCES.meta(name).get("reference"), name
        assert (div(name).__doc__ or "").strip().splitlines()[0], name


# ---- the generic property check (scd/distill/checks.py), on every registered divergence --------------------------

@cases
def test_every_registered_divergence_passes_the_property_check(name, opts):
    for seed in range(3):
        assert check_divergence(name, seed, options=opts) == [], seed


def test_only_a_few_divergences_escape_the_generic_check_and_each_says_why():
    assert CHECKABLE and 4 * len(UNCHECKED) <= len(ALL), UNCHECKED
    for name, reason in UNCHECKED.items():
        assert isinstance(reason, str) and len(reason) > 20, name
        with pytest.raises(NotCheckable, match="not checkable by the generic check: " + reason[:20]):
            check_divergence(name)


# Deliberately broken divergences, each with the one problem the check must name.
def _kl(s, t, mask, temperature=1.0):
    logq, logp = torch.log_softmax(s.float() / temperature, -1), torch.log_softmax(t.detach().float() / temperature, -1)
    return torch.where(mask, (logp.exp() * (logp - logq)).sum(-1), torch.zeros(mask.shape))


def _nan_somewhere(s, t, mask, temperature=1.0):
    out = _kl(s, t, mask, temperature)
    return torch.where(out > out[mask].median(), torch.full_like(out, math.nan), out)


def _negative(s, t, mask, temperature=1.0):
    return -_kl(s, t, mask, temperature)


def _declared_negative(s, t, mask, temperature=1.0):
    return -_kl(s, t, mask, temperature)


_declared_negative.nonnegative = False


def _offset(s, t, mask, temperature=1.0):
    return torch.where(mask, _kl(s, t, mask, temperature) + 0.3, torch.zeros(mask.shape))


def _leaks_padding(s, t, mask, temperature=1.0):
    return _kl(s, t, torch.ones_like(mask), temperature)


def _trains_the_teacher(s, t, mask, temperature=1.0):
    logq, logp = torch.log_softmax(s.float(), -1), torch.log_softmax(t.float(), -1)
    return torch.where(mask, (logp.exp() * (logp - logq)).sum(-1), torch.zeros(mask.shape))


def _detached(s, t, mask, temperature=1.0):
    return _kl(s.detach(), t, mask, temperature)


def _crashes_when_empty(s, t, mask, temperature=1.0):
    if not mask.any():
        raise RuntimeError("no tokens")
    return _kl(s, t, mask, temperature)


def _half_precision(s, t, mask, temperature=1.0):
    return _kl(s, t, mask, temperature).half()


BROKEN = {
    "nan": (_nan_somewhere, "not finite"),
    "negative": (_negative, "negative"),
    "offset": (_offset, "value at equal distributions is 0.3, expected 0"),
    "leaks_padding": (_leaks_padding, "value at masked positions"),
    "trains_the_teacher": (_trains_the_teacher, "gradient reaches the teacher logits"),
    "detached": (_detached, "no gradient reaches the student logits"),
    "crashes_when_empty": (_crashes_when_empty, "raises RuntimeError on an all-masked batch: no tokens"),
    "half_precision": (_half_precision, "expected torch.float32"),
}


@pytest.fixture
def broken():
    reg = Registry("divergence")
    for name, (fn, _) in BROKEN.items():
        reg.register(name, reference="a test")(fn)
    reg.register("declared_negative", reference="a test")(_declared_negative)
    reg.register("kl", reference="a test")(_kl)
    return reg


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_the_check_catches_a_broken_divergence(broken, name):
    problems = check_divergence(name, registry=broken)
    assert any(p.startswith(f"{name}: ") and BROKEN[name][1] in p for p in problems), problems


def test_the_check_passes_a_correct_one_and_honours_declared_exceptions(broken):
    assert check_divergence("kl", registry=broken) == []
    assert check_divergence("declared_negative", registry=broken) == []  # declares nonnegative = False


def test_check_command(capsys, monkeypatch):
    unchecked = sorted(UNCHECKED)[:1]
    assert check_main(["fkl", *unchecked]) == 0  # a divergence the check cannot call is named, not a failure
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ok fkl" and len(out) == 1 + len(unchecked)
    for name, line in zip(unchecked, out[1:]):
        assert line.startswith(f"skip {name}: not checkable by the generic check: ")
    assert check_main([]) == 0  # every registered divergence
    out = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[1].rstrip(":") for line in out) == ALL
    # a plugin's divergence, registered under a temporary name: checked like the others, and its failure named
    monkeypatch.setitem(DIVERGENCES._items, "tmp_negative", _negative)
    monkeypatch.setitem(DIVERGENCES._meta, "tmp_negative", {"reference": "a test"})
    assert check_main(["fkl", "tmp_negative"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ok fkl" and out[1].startswith("FAIL tmp_negative: value is negative")
    assert check_main(["fkl", "fk"]) == 2  # an unknown name: nothing checked, one line naming the closest
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "unknown divergence 'fk'" in err and "Did you mean 'fkl'" in err
    # the same check as a subcommand of `scd`
    assert scd_main(["methods", "check", "tmp_negative"]) == 1
    assert capsys.readouterr().out.startswith("FAIL tmp_negative: value is negative")
    assert scd_main(["methods", "check", "fkl"]) == 0


# ---- further properties of every registered divergence -------------------------------------------------------------

def random_batch(seed, b=3, t=5, v=13, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s, te = scale * torch.randn(b, t, v, generator=g), scale * torch.randn(b, t, v, generator=g)
    mask = torch.rand(b, t, generator=g) > 0.3
    mask[0, 0] = True
    return s, te, mask


@cases
def test_finite_with_minus_inf_teacher_logits(name, opts):
    fn, kw = built(name, opts)
    s, t, mask = random_batch(2, v=6)
    t[..., 0] = -INF
    t[0, 0, 2:] = -INF  # a position where the teacher allows only token 1
    t[1, 1, :] = torch.tensor([-INF, 5.0, -INF, -INF, -INF, -INF])
    mask[1, 1] = True
    s.requires_grad_(True)
    out = fn(s, t, mask, 1.0, **kw)
    assert torch.isfinite(out).all()
    if declares(name, "nonnegative"):
        assert out.min() >= -1e-6
    if out.requires_grad:
        masked_mean(out, mask).backward()
        assert torch.isfinite(s.grad).all()


@cases
def test_finite_when_both_models_have_minus_inf_at_the_same_entries(name, opts):
    # e.g. padded vocabulary entries masked out in both models
    fn, kw = built(name, opts)
    s, t, mask = random_batch(3, v=6)
    s[..., -2:] = -INF
    t[..., -2:] = -INF
    s.requires_grad_(True)
    out = fn(s, t, mask, 1.0, **kw)
    ref = fn(s[..., :-2].detach(), t[..., :-2], mask, 1.0, **kw)
    assert torch.allclose(out, ref, atol=1e-6)
    if out.requires_grad:
        masked_mean(out, mask).backward()
        assert torch.isfinite(s.grad).all()


@cases
def test_invariant_to_padding_length(name, opts):
    fn, kw = built(name, opts)
    s, t, mask = random_batch(5, t=4)
    base = fn(s, t, mask, 1.0, **kw)
    g = torch.Generator().manual_seed(99)
    pad_s, pad_t = 50 * torch.randn(3, 3, 13, generator=g), 50 * torch.randn(3, 3, 13, generator=g)
    pad_t[..., :5] = -INF
    s2, t2 = torch.cat([s, pad_s], 1), torch.cat([t, pad_t], 1)
    mask2 = torch.cat([mask, torch.zeros(3, 3, dtype=torch.bool)], 1)
    padded = fn(s2, t2, mask2, 1.0, **kw)
    assert torch.equal(padded[:, 4:], torch.zeros(3, 3))
    assert torch.allclose(padded[:, :4], base, rtol=1e-6, atol=1e-7)
    assert torch.allclose(masked_mean(padded, mask2), masked_mean(base, mask), rtol=1e-6)


@cases
@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_temperature_is_logits_over_tau(name, opts, tau):
    fn, kw = built(name, opts)
    s, t, mask = random_batch(6)
    at_tau = fn(s, t, mask, tau, **kw)
    scaled = fn(s / tau, t / tau, mask, 1.0, **kw)
    assert torch.allclose(at_tau, scaled, rtol=1e-5, atol=1e-6)
    if declares(name, "trains_student"):  # a constant is the same at every temperature
        assert not torch.allclose(at_tau, fn(s, t, mask, 1.0, **kw), atol=1e-3)


@cases
def test_float32_for_bf16_logits(name, opts):
    fn, kw = built(name, opts)
    s, t, mask = random_batch(8)
    out = fn(s.to(torch.bfloat16), t.to(torch.bfloat16), mask, 1.0, **kw)
    assert out.dtype == torch.float32
    ref = fn(s.to(torch.bfloat16).float(), t.to(torch.bfloat16).float(), mask, 1.0, **kw)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("name,opts", [("jsd", {"beta": -0.1}), ("jsd", {"beta": 1.5}), ("skew_kl", {"skew": 1.1}),
                                       ("skew_rkl", {"skew": -0.5}), ("akl", {"mu": 2.0})])
def test_out_of_range_hyperparameters_are_rejected(name, opts):
    s, t, mask = random_batch(0)
    with pytest.raises(ValueError):
        div(name)(s, t, mask, 1.0, **opts)


def test_skew_ends():
    s, t, mask = random_batch(9)
    assert torch.equal(div("skew_kl")(s, t, mask, skew=0.0), div("fkl")(s, t, mask))
    assert torch.equal(div("skew_rkl")(s, t, mask, skew=0.0), div("rkl")(s, t, mask))
    for name in ("skew_kl", "skew_rkl"):  # KL(x || x) = 0
        assert torch.allclose(div(name)(s, t, mask, skew=1.0), torch.zeros(3, 5), atol=1e-6)


# ---- AKL head / tail ------------------------------------------------------------------------------------------------

def one_position(probs):
    return torch.log(torch.tensor([[probs]], dtype=torch.float32))


def test_akl_gathers_the_student_at_the_teachers_sorted_indices():
    # p = [0.1, 0.7, 0.2] (not sorted in vocabulary order), q = [0.6, 0.3, 0.1], mu = 0.5 -> head = {token 1}.
    # aligned:    g_head = |0.7 - 0.3| = 0.4, g_tail = |0.1 - 0.6| + |0.2 - 0.1| = 0.6 -> weights (0.4, 0.6)
    # misaligned (sorted p = [0.7, 0.2, 0.1] against unsorted q = [0.6, 0.3, 0.1]): g_head = 0.1, g_tail = 0.1
    #             -> weights (0.5, 0.5)
    p, q = [0.1, 0.7, 0.2], [0.6, 0.3, 0.1]
    t, s = one_position(p), one_position(q)
    w_h, w_t = head_tail_weights(torch.tensor(p), torch.tensor(q), 0.5)
    assert math.isclose(float(w_h), 0.4, rel_tol=1e-6) and math.isclose(float(w_t), 0.6, rel_tol=1e-6)
    fkl = sum(a * math.log(a / b) for a, b in zip(p, q))
    rkl = sum(b * math.log(b / a) for a, b in zip(p, q))
    got = float(div("akl")(s, t, torch.ones(1, 1, dtype=torch.bool)))
    assert math.isclose(got, 0.4 * fkl + 0.6 * rkl, rel_tol=1e-5)
    misaligned = 0.5 * fkl + 0.5 * rkl
    assert abs(got - misaligned) > 1e-2


def test_akl_head_includes_the_token_that_crosses_mu():
    p = torch.tensor([0.25, 0.4, 0.35])
    # mu = 0.5: 0.4 alone does not reach it, 0.4 + 0.35 does -> head = {1, 2} (the crossing token 2 included)
    assert head_mask(p, 0.5).tolist() == [False, True, True]
    # dyadic masses, exact in float32: 0.5 reaches mu = 0.5 by itself -> head = {1}; mu = 0.6 adds the first of the
    # tied 0.25s in vocabulary order (stable sort)
    d = torch.tensor([0.25, 0.5, 0.25])
    assert head_mask(d, 0.5).tolist() == [False, True, False]
    assert head_mask(d, 0.6).tolist() == [True, True, False]
    assert head_mask(d, 1.0).tolist() == [True, True, True]
    assert head_mask(d, 0.0).tolist() == [False, False, False]
    # batched [B, T, V]: the mask is per position
    both = torch.stack([p, d]).unsqueeze(0)
    assert head_mask(both, 0.5).tolist() == [[[False, True, True], [False, True, False]]]


def test_akl_weights_without_gap_are_one_half_and_carry_no_gradient():
    p = torch.tensor([0.2, 0.5, 0.3])
    w_h, w_t = head_tail_weights(p, p.clone(), 0.5)
    assert float(w_h) == 0.5 and float(w_t) == 0.5
    # the gradient of AKL is that of w_h * FKL + w_t * RKL with the weights held constant
    s, t, mask = random_batch(10)
    s.requires_grad_(True)
    div("akl")(s, t, mask).sum().backward()
    w_h, w_t = head_tail_weights(torch.softmax(t, -1), torch.softmax(s.detach(), -1), 0.5)
    s2 = s.detach().clone().requires_grad_(True)
    (w_h * div("fkl")(s2, t, mask) + w_t * div("rkl")(s2, t, mask)).sum().backward()
    assert torch.allclose(s.grad, s2.grad, atol=1e-6)
    assert not torch.allclose(w_h, torch.full_like(w_h, 0.5))  # the weights are not trivial here
