"""The token-level divergences of the baseline zoo (baselines/*.py): golden values computed here with numpy (float64)
from the formulas in docs/baselines.md, hand-derived closed forms, agreement with TRL's generalized JSD, and the
properties every registered divergence must have (zero at equality, non-negative, finite on degenerate batches and
-inf logits, gradient only into the student, padding- and temperature-consistent)."""
import math
import os

import numpy as np
import pytest
import torch

from baselines.akl import head_mask, head_tail_weights
from scd.distill.losses import LOG_FLOOR
from scd.tokens import masked_mean
from scd.distill.parts import DIVERGENCES, hyperparameters
from scd.distill.plugins import load_plugins

load_plugins()

NAMES = ["fkl", "rkl", "jsd", "tvd", "sym_kl", "skew_kl", "skew_rkl", "akl"]
HYPERPARAMETERS = {"fkl": {}, "rkl": {}, "jsd": {"beta": 0.5}, "tvd": {}, "sym_kl": {}, "skew_kl": {"skew": 0.1},
                   "skew_rkl": {"skew": 0.1}, "akl": {"mu": 0.5}}
# every divergence at its defaults, plus the ends and some other values of the hyperparameters
CASES = [(n, {}) for n in NAMES] + [
    ("jsd", {"beta": 0.0}), ("jsd", {"beta": 1.0}), ("jsd", {"beta": 0.1}), ("jsd", {"beta": 0.9}),
    ("skew_kl", {"skew": 0.0}), ("skew_kl", {"skew": 0.5}), ("skew_rkl", {"skew": 0.0}), ("skew_rkl", {"skew": 0.5}),
    ("akl", {"mu": 0.1}), ("akl", {"mu": 0.9}),
]
CASE_IDS = [n + "".join(f"-{k}{v}" for k, v in o.items()) for n, o in CASES]
cases = pytest.mark.parametrize("name,opts", CASES, ids=CASE_IDS)


def div(name):
    return DIVERGENCES.get(name)


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


@cases
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
    gkd = pytest.importorskip("trl.experimental.gkd")
    return gkd.GKDTrainer.generalized_jsd_loss


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


# ---- properties of every divergence ----------------------------------------------------------------------------------

def random_batch(seed, b=3, t=5, v=13, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s, te = scale * torch.randn(b, t, v, generator=g), scale * torch.randn(b, t, v, generator=g)
    mask = torch.rand(b, t, generator=g) > 0.3
    mask[0, 0] = True
    return s, te, mask


def test_registry_lists_every_divergence_with_its_hyperparameters_reference_and_doc():
    for name in NAMES:
        fn = div(name)
        assert hyperparameters(fn) == HYPERPARAMETERS[name], name
        assert DIVERGENCES.meta(name).get("reference"), name
        assert (fn.__doc__ or "").strip().splitlines()[0], name


@cases
def test_zero_when_teacher_equals_student(name, opts):
    z, _, mask = random_batch(1)
    out = div(name)(z, z.clone(), mask, 1.0, **opts)
    assert torch.allclose(out, torch.zeros_like(out), atol=1e-5)


@cases
def test_non_negative_and_positive_where_distributions_differ(name, opts):
    for seed in range(3):
        s, t, mask = random_batch(seed)
        out = div(name)(s, t, mask, 1.0, **opts)
        assert torch.isfinite(out).all()
        assert out.min() >= -1e-6
        assert (out[mask] > 1e-4).all()  # random distributions differ at every valid token


@cases
def test_all_masked_and_empty_batches_give_finite_zeros_with_finite_gradients(name, opts):
    for shape in [(2, 4, 7), (0, 3, 5)]:
        s = torch.randn(*shape, requires_grad=True)
        t = torch.randn(*shape)
        mask = torch.zeros(shape[:2], dtype=torch.bool)
        out = div(name)(s, t, mask, 1.0, **opts)
        assert out.shape == shape[:2] and (out == 0).all()
        loss = masked_mean(out, mask)
        assert torch.isfinite(loss) and float(loss.detach()) == 0.0
        loss.backward()
        assert s.grad is not None and torch.isfinite(s.grad).all()


@cases
def test_finite_with_minus_inf_teacher_logits(name, opts):
    s, t, mask = random_batch(2, v=6)
    t[..., 0] = -INF
    t[0, 0, 2:] = -INF  # a position where the teacher allows only token 1
    t[1, 1, :] = torch.tensor([-INF, 5.0, -INF, -INF, -INF, -INF])
    mask[1, 1] = True
    s.requires_grad_(True)
    out = div(name)(s, t, mask, 1.0, **opts)
    assert torch.isfinite(out).all() and out.min() >= -1e-6
    masked_mean(out, mask).backward()
    assert torch.isfinite(s.grad).all()


@cases
def test_finite_when_both_models_have_minus_inf_at_the_same_entries(name, opts):
    # e.g. padded vocabulary entries masked out in both models
    s, t, mask = random_batch(3, v=6)
    s[..., -2:] = -INF
    t[..., -2:] = -INF
    s.requires_grad_(True)
    out = div(name)(s, t, mask, 1.0, **opts)
    ref = div(name)(s[..., :-2].detach(), t[..., :-2], mask, 1.0, **opts)
    assert torch.allclose(out, ref, atol=1e-6)
    masked_mean(out, mask).backward()
    assert torch.isfinite(s.grad).all()


@cases
def test_gradient_flows_only_into_the_student(name, opts):
    s, t, mask = random_batch(4)
    s.requires_grad_(True)
    t.requires_grad_(True)
    masked_mean(div(name)(s, t, mask, 1.0, **opts), mask).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


@cases
def test_invariant_to_padding_length(name, opts):
    s, t, mask = random_batch(5, t=4)
    base = div(name)(s, t, mask, 1.0, **opts)
    g = torch.Generator().manual_seed(99)
    pad_s, pad_t = 50 * torch.randn(3, 3, 13, generator=g), 50 * torch.randn(3, 3, 13, generator=g)
    pad_t[..., :5] = -INF
    s2, t2 = torch.cat([s, pad_s], 1), torch.cat([t, pad_t], 1)
    mask2 = torch.cat([mask, torch.zeros(3, 3, dtype=torch.bool)], 1)
    padded = div(name)(s2, t2, mask2, 1.0, **opts)
    assert torch.equal(padded[:, 4:], torch.zeros(3, 3))
    assert torch.allclose(padded[:, :4], base, rtol=1e-6, atol=1e-7)
    assert torch.allclose(masked_mean(padded, mask2), masked_mean(base, mask), rtol=1e-6)


@cases
@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_temperature_is_logits_over_tau(name, opts, tau):
    s, t, mask = random_batch(6)
    at_tau = div(name)(s, t, mask, tau, **opts)
    scaled = div(name)(s / tau, t / tau, mask, 1.0, **opts)
    assert torch.allclose(at_tau, scaled, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(at_tau, div(name)(s, t, mask, 1.0, **opts), atol=1e-3)


@cases
def test_float32_for_bf16_logits(name, opts):
    s, t, mask = random_batch(8)
    out = div(name)(s.to(torch.bfloat16), t.to(torch.bfloat16), mask, 1.0, **opts)
    assert out.dtype == torch.float32
    ref = div(name)(s.to(torch.bfloat16).float(), t.to(torch.bfloat16).float(), mask, 1.0, **opts)
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
