"""DSKD (dual space, and with cross-model attention) and ULD: golden values from independent float64 numpy code written
here from the formulas in baselines/dskd.py and baselines/uld.py, hand identities, masking and degenerate batches,
where gradient goes (student and projectors, never the teacher), padding invariance of the teacher side, saved state,
and the presets."""
import math

import numpy as np
import pytest
import torch

from baselines.dskd import DSKD, DSKDCMA, cross_model_attention
from baselines.uld import uld, uld_aligned, uld_cross
from scd.distill.methods import method_from_config, resolve_spec
from scd.distill.parts import DIVERGENCES, METHODS, hyperparameters
from scd.distill.plugins import load_plugins
from scd.tokens import token_ce

load_plugins()


# ---- independent float64 references --------------------------------------------------------------------------------

def npa(x):
    return x.detach().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def np_softmax(z, tau=1.0):
    z = npa(z) / tau
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_log_softmax(z, tau=1.0):
    z = npa(z) / tau
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def np_kl_logits(a, b, tau=1.0):
    """KL(softmax(a/tau) || softmax(b/tau))."""
    la, lb = np_log_softmax(a, tau), np_log_softmax(b, tau)
    return float((np.exp(la) * (la - lb)).sum(-1))


def np_ce(logits, y):
    return float(-np_log_softmax(logits)[y])


def np_linear(layer):
    w, b = npa(layer.weight), npa(layer.bias)
    return lambda x: npa(x) @ w.T + b


def np_uld_row(zs, zt, tau=1.0):
    """Per aligned position of one row: zs [Ns, Vs], zt [Nt, Vt] -> [min(Ns, Nt)]."""
    n = min(len(zs), len(zt))
    out = []
    for i in range(n):
        q = -np.sort(-np_softmax(zs[i], tau))
        p = -np.sort(-np_softmax(zt[i], tau))
        v = max(len(q), len(p))
        q, p = np.concatenate([q, np.zeros(v - len(q))]), np.concatenate([p, np.zeros(v - len(p))])
        out.append(np.abs(q - p).sum())
    return np.array(out)


def np_dskd(zs, zt, hs, ht, ws, wt, labels, mask, t2s, s2t, tau):
    out = np.zeros(mask.shape)
    for b, t in zip(*np.nonzero(npa(mask))):
        y = int(labels[b, t])
        l_t2s = t2s(ht[b, t]) @ npa(ws).T
        l_s2t = s2t(hs[b, t]) @ npa(wt).T
        out[b, t] = np_ce(l_t2s, y) + np_kl_logits(l_t2s, zs[b, t], tau) + np_kl_logits(zt[b, t], l_s2t, tau)
    return out


def np_cma(c, obj, tau=1.0, correct_only=True):
    """DSKD-CMA from the docstring's formulas, row by row over the valid tokens only."""
    query, t2s, s2t = np_linear(obj.query), np_linear(obj.t2s), np_linear(obj.s2t)
    es, et = npa(c["student_embed"]), npa(c["teacher_embed"])
    hs, ht = npa(c["student_hidden"]), npa(c["teacher_hidden"])
    zs, zt, ws, wt = npa(c["student_logits"]), npa(c["teacher_logits"]), npa(c["student_head"]), npa(c["teacher_head"])
    s_ids, s_tgt, t_ids, t_tgt = (c[k].numpy() for k in ("input_ids", "labels", "teacher_input_ids", "teacher_labels"))
    s_mask, t_mask = s_tgt != -100, t_tgt != -100
    sv = s_mask & t_mask.any(1, keepdims=True)
    tv = t_mask & s_mask.any(1, keepdims=True)
    tb, tj = np.nonzero(tv)
    sig_k = np.std(np.concatenate([et[t_ids[tb, tj]], et[t_tgt[tb, tj]]], -1), ddof=1)
    sig_y = np.std(et[t_tgt[tb, tj]], ddof=1)
    sig_h = np.std(ht[tb, tj], ddof=1)
    ht_size = ht.shape[-1]
    out = np.zeros(s_mask.shape)
    shared = sv.shape == tv.shape and (sv == tv).all()
    for b in range(s_mask.shape[0]):
        I, J = np.nonzero(sv[b])[0], np.nonzero(tv[b])[0]
        if not len(I) or not len(J):
            continue
        q = query(np.concatenate([es[s_ids[b, I]], es[s_tgt[b, I]]], -1))
        k = np.concatenate([et[t_ids[b, J]], et[t_tgt[b, J]]], -1) / sig_k
        S = q @ k.T / math.sqrt(2 * ht_size)
        h_t2s = np_softmax(S) @ t2s(ht[b, J] / sig_h + et[t_tgt[b, J]] / sig_y)
        h_s2t = np_softmax(S.T) @ s2t(hs[b, I])
        for n, i in enumerate(I):
            l = h_t2s[n] @ ws.T
            kl = np_kl_logits(l, zs[b, i], tau)
            if correct_only and l.argmax() != s_tgt[b, i]:
                kl = 0.0
            out[b, i] += np_ce(l, s_tgt[b, i]) + kl
        kl_t = np.array([np_kl_logits(zt[b, j], h_s2t[m] @ wt.T, tau) for m, j in enumerate(J)])
        if shared:
            out[b, J] += kl_t
        else:
            out[b, I] += kl_t.sum() / len(I)
    return out


# ---- test data ------------------------------------------------------------------------------------------------------

def dskd_case(seed=0, B=2, T=6, V=13, Vt=None, Hs=5, Ht=7, scale=2.0):
    """A shared-tokenizer batch as the training loop builds it: teacher tensors zero off the response positions,
    garbage in the student's tensors there."""
    g = torch.Generator().manual_seed(seed)
    Vt = Vt or V
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, 2:] = True
    if B > 1:
        mask[1, 1:4] = True
    labels = torch.where(mask, torch.randint(0, V, (B, T), generator=g), torch.full((B, T), -100))
    m = mask.unsqueeze(-1).float()
    return dict(
        student_logits=scale * torch.randn(B, T, V, generator=g),
        teacher_logits=scale * torch.randn(B, T, Vt, generator=g) * m,
        mask=mask, labels=labels,
        input_ids=torch.randint(0, V, (B, T), generator=g),
        student_hidden=torch.randn(B, T, Hs, generator=g),
        teacher_hidden=torch.randn(B, T, Ht, generator=g) * m,
        student_head=torch.randn(V, Hs, generator=g),
        teacher_head=torch.randn(Vt, Ht, generator=g),
        student_embed=torch.randn(V, Hs, generator=g),
        teacher_embed=torch.randn(Vt, Ht, generator=g),
    )


def cross_case(seed=0, Ts=6, Tt=9, Vs=11, Vt=17, Hs=4, Ht=6, t_mask=None):
    """Student and teacher rows of different lengths, vocabularies and hidden sizes (two rows)."""
    g = torch.Generator().manual_seed(seed)
    B = 2
    s_mask = torch.zeros(B, Ts, dtype=torch.bool)
    s_mask[0, 2:6] = True
    s_mask[1, 1:4] = True
    if t_mask is None:
        t_mask = torch.zeros(B, Tt, dtype=torch.bool)
        t_mask[0, 3:9] = True
        t_mask[1, 0:2] = True
    tm = t_mask.unsqueeze(-1).float()
    return dict(
        student_logits=2 * torch.randn(B, Ts, Vs, generator=g),
        teacher_logits=2 * torch.randn(B, Tt, Vt, generator=g) * tm,
        mask=s_mask,
        labels=torch.where(s_mask, torch.randint(0, Vs, (B, Ts), generator=g), torch.full((B, Ts), -100)),
        input_ids=torch.randint(0, Vs, (B, Ts), generator=g),
        teacher_labels=torch.where(t_mask, torch.randint(0, Vt, (B, Tt), generator=g), torch.full((B, Tt), -100)),
        teacher_input_ids=torch.randint(0, Vt, (B, Tt), generator=g),
        student_hidden=torch.randn(B, Ts, Hs, generator=g),
        teacher_hidden=torch.randn(B, Tt, Ht, generator=g) * tm,
        student_head=torch.randn(Vs, Hs, generator=g),
        teacher_head=torch.randn(Vt, Ht, generator=g),
        student_embed=torch.randn(Vs, Hs, generator=g),
        teacher_embed=torch.randn(Vt, Ht, generator=g),
    )


def build(cls, c, seed=0, **options):
    torch.manual_seed(seed)
    obj = cls(**options)
    obj.bind(c["student_hidden"].shape[-1], c["teacher_hidden"].shape[-1])
    return obj


def call(obj, c, tau=1.0):
    inputs = {k: v for k, v in c.items() if k not in ("student_logits", "teacher_logits", "mask")}
    return obj(c["student_logits"], c["teacher_logits"], c["mask"], tau, **inputs)


TEACHER = ("teacher_logits", "teacher_hidden", "teacher_head", "teacher_embed")


def no_grad_reached(t):
    return t.grad is None or not t.grad.any()


# ---- ULD ------------------------------------------------------------------------------------------------------------

def test_uld_zero_padding_by_hand():
    # student uniform over 2 tokens: sorted (.5, .5, 0, 0) after padding; teacher uniform over 4: (.25,) * 4
    out = uld_aligned(torch.zeros(1, 2), torch.zeros(1, 4))
    assert out.shape == (1,)
    assert abs(float(out[0]) - 1.0) < 1e-6
    # the padding goes to the smaller side either way: the loss is symmetric in the two vocabulary sizes
    assert abs(float(uld_aligned(torch.zeros(1, 4), torch.zeros(1, 2))[0]) - 1.0) < 1e-6


@pytest.mark.parametrize("vs,vt", [(7, 11), (11, 7), (9, 9)])
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_uld_aligned_matches_numpy_with_different_vocabularies_and_lengths(vs, vt, tau):
    g = torch.Generator().manual_seed(vs * 100 + vt)
    zs, zt = 3 * torch.randn(5, vs, generator=g), 3 * torch.randn(3, vt, generator=g)
    out = uld_aligned(zs, zt, tau)
    assert out.shape == (3,)  # truncated to the shorter response
    np.testing.assert_allclose(out.numpy(), np_uld_row(zs, zt, tau), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(uld_aligned(zt, zs, tau).numpy(), np_uld_row(zt, zs, tau), rtol=1e-5, atol=1e-6)


def test_uld_is_a_function_of_the_sorted_distributions_only():
    g = torch.Generator().manual_seed(3)
    zs, zt = torch.randn(4, 9, generator=g), torch.randn(4, 12, generator=g)
    perm = torch.randperm(9, generator=g)
    assert torch.allclose(uld_aligned(zs, zt), uld_aligned(zs[:, perm], zt), atol=1e-6)
    assert torch.allclose(uld_aligned(zs, zs[:, perm]), torch.zeros(4), atol=1e-6)
    assert (uld_aligned(zs, zt) > 0).all()


def test_uld_cross_pairs_the_ith_response_tokens_of_rows_of_different_lengths():
    g = torch.Generator().manual_seed(1)
    Ts, Tt, Vs, Vt = 7, 5, 10, 6
    zs, zt = 2 * torch.randn(2, Ts, Vs, generator=g), 2 * torch.randn(2, Tt, Vt, generator=g)
    s_mask, t_mask = torch.zeros(2, Ts, dtype=torch.bool), torch.zeros(2, Tt, dtype=torch.bool)
    s_mask[0, 2:6] = True   # 4 student tokens, teacher row 0 has 3: the last student token gets 0
    t_mask[0, 1:4] = True
    s_mask[1, [0, 3, 5]] = True  # non-contiguous; teacher row 1 has 4 tokens: truncated to 3
    t_mask[1, 0:4] = True
    out = uld_cross(zs, s_mask, zt, t_mask, 1.5)
    expected = np.zeros((2, Ts))
    for b in range(2):
        s_pos, t_pos = np.nonzero(s_mask[b].numpy())[0], np.nonzero(t_mask[b].numpy())[0]
        vals = np_uld_row(npa(zs[b, s_pos]), npa(zt[b, t_pos]), 1.5)
        expected[b, s_pos[:len(vals)]] = vals
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert out[0, 5] == 0 and out[0, 2:5].gt(0).all()


def test_uld_divergence_masks_handles_a_different_teacher_vocabulary_and_reuses_the_alignment():
    c = dskd_case(seed=2, V=9, Vt=14)
    zs = c["student_logits"].clone().requires_grad_(True)
    zt = c["teacher_logits"].clone().requires_grad_(True)
    zs.data[~c["mask"]] = 1e4  # garbage at masked positions must not leak
    out = DIVERGENCES.get("uld")(zs, zt, c["mask"], 2.0)
    assert out.dtype == torch.float32 and out.shape == c["mask"].shape
    assert (out[~c["mask"]] == 0).all()
    expected = np.zeros(c["mask"].shape)
    for b, t in zip(*np.nonzero(c["mask"].numpy())):
        expected[b, t] = np_uld_row(npa(zs[b, t:t + 1]), npa(zt[b, t:t + 1]), 2.0)[0]
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(out, uld_cross(zs, c["mask"], zt, c["mask"], 2.0))
    out.sum().backward()
    assert zs.grad.abs().sum() > 0 and (zs.grad[~c["mask"]] == 0).all()
    assert no_grad_reached(zt)


@pytest.mark.parametrize("B,T", [(2, 5), (0, 5), (2, 0)])
def test_uld_all_masked_and_empty_batches_are_finite_zero(B, T):
    zs = torch.randn(B, T, 6, requires_grad=True)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for out in (uld(zs, torch.randn(B, T, 8), mask), uld_cross(zs, mask, torch.randn(B, 3, 8), mask[:, :0])):
        assert out.shape == (B, T) and torch.isfinite(out).all() and (out == 0).all()
        out.sum().backward()
        assert zs.grad is None or torch.isfinite(zs.grad).all()


def test_uld_preset_maps_lambda_to_alpha():
    assert METHODS.get("uld")["alpha"] == pytest.approx(1.5 / (1 + 1.5))
    spec = resolve_spec("uld", {})
    assert spec["divergence"] == "uld" and spec["alpha"] == 0.6
    m = method_from_config("uld", {})
    assert m.divergence is uld and m.alpha == 0.6 and hyperparameters(uld) == {}
    assert DIVERGENCES.meta("uld").get("reference")


def test_uld_through_method_loss_with_a_different_teacher_vocabulary():
    c = dskd_case(seed=4, V=9, Vt=12)
    m = method_from_config("uld", {})
    zs = c["student_logits"].clone().requires_grad_(True)
    loss, stats = m.loss(zs, c["teacher_logits"], c["labels"], torch.full((2,), 0.6))
    mask = c["mask"]
    div = uld(c["student_logits"], c["teacher_logits"], mask)
    expected = ((0.6 * div + 0.4 * token_ce(c["student_logits"], c["labels"])) * mask).sum() / mask.sum()
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert torch.isfinite(zs.grad).all() and zs.grad.abs().sum() > 0


# ---- DSKD (shared vocabulary) ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_dskd_matches_numpy_with_random_projectors(tau):
    c = dskd_case(seed=5)
    obj = build(DSKD, c)
    out = call(obj, c, tau)
    expected = np_dskd(npa(c["student_logits"]), npa(c["teacher_logits"]), npa(c["student_hidden"]),
                       npa(c["teacher_hidden"]), c["student_head"], c["teacher_head"], c["labels"], c["mask"],
                       np_linear(obj.t2s), np_linear(obj.s2t), tau)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-4, atol=1e-5)


def test_dskd_with_identity_projectors_is_teacher_ce_plus_twice_the_forward_kl():
    """Hs == Ht, identity projectors, one head W for both models, z_T = h_T W^T and z_S = h_S W^T: t2s_logits are the
    teacher's logits and s2t_logits the student's, so D = CE(y, p) + KL(p || q) + KL(p || q)."""
    c = dskd_case(seed=6, Hs=6, Ht=6)
    c["teacher_head"] = c["student_head"].clone()
    c["teacher_logits"] = c["teacher_hidden"] @ c["teacher_head"].T
    c["student_logits"] = c["student_hidden"] @ c["student_head"].T
    obj = build(DSKD, c)
    with torch.no_grad():
        for lin in (obj.t2s, obj.s2t):
            lin.weight.copy_(torch.eye(6))
            lin.bias.zero_()
    out = call(obj, c).detach().numpy()
    mask = c["mask"].numpy()
    for b, t in zip(*np.nonzero(mask)):
        p_logits, q_logits = c["teacher_logits"][b, t], c["student_logits"][b, t]
        hand = np_ce(p_logits, int(c["labels"][b, t])) + 2 * np_kl_logits(p_logits, q_logits)
        assert out[b, t] == pytest.approx(hand, rel=1e-4, abs=1e-5)
    assert (out[~mask] == 0).all()


def test_dskd_masked_positions_are_exactly_zero_and_their_contents_do_not_matter():
    c = dskd_case(seed=7)
    obj = build(DSKD, c)
    a = call(obj, c)
    mask = c["mask"]
    for k in ("student_logits", "student_hidden", "teacher_logits", "teacher_hidden"):
        c[k] = c[k].clone()
        c[k][~mask] = 1e4
    b = call(obj, c)
    assert (a[~mask] == 0).all() and (b[~mask] == 0).all() and (a[mask] > 0).all()
    assert torch.equal(a, b)


@pytest.mark.parametrize("cls", [DSKD, DSKDCMA])
@pytest.mark.parametrize("B,T", [(2, 6), (0, 6), (2, 0)])
def test_all_masked_and_empty_batches_are_finite_with_finite_gradients(cls, B, T):
    c = dskd_case(seed=8)
    c = {k: (v[:B, :T] if k not in ("student_head", "teacher_head", "student_embed", "teacher_embed") else v)
         for k, v in c.items()}
    c["labels"] = torch.full_like(c["labels"], -100)
    c["mask"] = torch.zeros_like(c["mask"])
    for k in ("student_logits", "student_hidden", "student_head"):
        c[k] = c[k].clone().requires_grad_(True)
    obj = build(cls, c)
    out = call(obj, c)
    assert out.shape == (B, T) and (out == 0).all()
    out.sum().backward()
    for t in [c["student_logits"], c["student_hidden"], c["student_head"], *obj.parameters()]:
        assert t.grad is None or torch.isfinite(t.grad).all()


def test_dskd_gradient_reaches_student_and_projectors_never_the_teacher():
    c = dskd_case(seed=9)
    hs = c["student_hidden"].clone().requires_grad_(True)
    ws = c["student_head"].clone().requires_grad_(True)
    c["student_hidden"], c["student_head"] = hs, ws
    c["student_logits"] = hs @ ws.T  # as in the model: the head learns through the student's logits
    c["student_logits"].retain_grad()
    for k in TEACHER:
        c[k] = c[k].clone().requires_grad_(True)
    obj = build(DSKD, c)
    call(obj, c).sum().backward()
    assert c["student_logits"].grad.abs().sum() > 0
    assert hs.grad.abs().sum() > 0 and ws.grad.abs().sum() > 0
    for p in obj.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    for k in TEACHER:
        assert no_grad_reached(c[k]), k


def test_dskd_student_head_is_detached_inside_t2s_as_in_the_reference():
    c = dskd_case(seed=10)
    ws = c["student_head"].clone().requires_grad_(True)
    c["student_head"] = ws
    c["student_logits"] = c["student_logits"].clone().requires_grad_(True)  # not computed from the head here
    call(build(DSKD, c), c).sum().backward()
    assert no_grad_reached(ws)


@pytest.mark.parametrize("cls", [DSKD, DSKDCMA])
def test_teacher_space_kl_trains_the_student_hidden_states_through_s2t(cls):
    """With student logits not computed from the hidden states, the hidden states learn from the teacher-space KL
    alone (for dskd: exactly the gradient of sum KL(p || softmax(s2t(h_S) W_T^T)))."""
    c = dskd_case(seed=15)
    hs = c["student_hidden"].clone().requires_grad_(True)
    c["student_hidden"] = hs
    obj = build(cls, c)
    call(obj, c).sum().backward()
    assert hs.grad.abs().sum() > 0
    if cls is DSKD:
        mask, h = c["mask"], c["student_hidden"].detach().clone().requires_grad_(True)
        s2t_logits = obj.s2t(h[mask]) @ c["teacher_head"].T
        p = torch.softmax(c["teacher_logits"][mask], -1)
        kl = (p * (p.log() - torch.log_softmax(s2t_logits, -1))).sum()
        kl.backward()
        assert torch.allclose(hs.grad, h.grad, atol=1e-5, rtol=1e-4)


def test_dskd_t2s_learns_from_the_ce_term_alone():
    """The gradient on t2s equals that of CE(y, t2s(h_T) W_S^T) by itself: nonzero (the CE trains t2s) and with
    no contribution from the student-space KL, whose t2s_logits are detached as in the reference."""
    c = dskd_case(seed=11)
    obj = build(DSKD, c)
    call(obj, c).sum().backward()
    mask = c["mask"]
    w = obj.t2s.weight.detach().clone().requires_grad_(True)
    bias = obj.t2s.bias.detach().clone().requires_grad_(True)
    logits = (c["teacher_hidden"][mask] @ w.T + bias) @ c["student_head"].T
    torch.nn.functional.cross_entropy(logits, c["labels"][mask], reduction="sum").backward()
    assert obj.t2s.weight.grad.abs().sum() > 0
    assert torch.allclose(obj.t2s.weight.grad, w.grad, atol=1e-5, rtol=1e-4)
    assert torch.allclose(obj.t2s.bias.grad, bias.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cls,keys", [(DSKD, {"t2s.weight", "t2s.bias", "s2t.weight", "s2t.bias"}),
                                      (DSKDCMA, {"t2s.weight", "t2s.bias", "s2t.weight", "s2t.bias",
                                                 "query.weight", "query.bias"})])
def test_state_dict_holds_the_projectors_and_restores_the_loss(cls, keys):
    from safetensors.torch import load, save

    c = dskd_case(seed=12, Hs=5, Ht=7)
    obj = build(cls, c, seed=1)
    state = obj.state_dict()
    assert set(state) == keys
    assert state["t2s.weight"].shape == (5, 7) and state["s2t.weight"].shape == (7, 5)
    if cls is DSKDCMA:
        assert state["query.weight"].shape == (14, 10)
    blob = save({k: v.contiguous() for k, v in state.items()})  # as scd.stages.distill.save_objective writes it
    other = build(cls, c, seed=2)
    assert not torch.equal(call(other, c), call(obj, c))
    other.load_state_dict(load(blob))
    assert torch.equal(call(other, c), call(obj, c))


def test_objectives_must_be_bound_and_need_their_inputs():
    c = dskd_case(seed=13)
    with pytest.raises(RuntimeError, match="bind"):
        call(DSKD(), c)
    obj = build(DSKD, c)
    with pytest.raises(ValueError, match="labels"):
        obj(c["student_logits"], c["teacher_logits"], c["mask"], 1.0, student_hidden=c["student_hidden"],
            teacher_hidden=c["teacher_hidden"], student_head=c["student_head"], teacher_head=c["teacher_head"])


def test_registry_and_presets():
    assert DIVERGENCES.get("dskd") is DSKD and DIVERGENCES.get("dskd_cma") is DSKDCMA
    assert DIVERGENCES.meta("dskd").get("reference") and DIVERGENCES.meta("dskd_cma").get("reference")
    assert hyperparameters(DSKD) == {} and hyperparameters(DSKDCMA) == {"t2s_correct_only": True}
    for name, cls in (("dskd", DSKD), ("dskd_cma", DSKDCMA)):
        assert METHODS.get(name)["divergence"] == name
        m = method_from_config(name, {})
        assert isinstance(m.objective, cls) and m.uses_hidden and m.alpha == 0.5
    assert method_from_config("dskd_cma", {"options": {"t2s_correct_only": False}}).objective.t2s_correct_only is False


@pytest.mark.parametrize("name", ["dskd", "dskd_cma"])
def test_objectives_through_method_loss_as_the_training_loop_calls_them(name):
    """run.py's loss_fn: Method.loss(logits, teacher logits, labels, weights, labelled, n_tokens, **inputs), inputs
    with the hidden states, heads, embeddings and input_ids; Method.loss adds the labels for uses_hidden objectives."""
    c = dskd_case(seed=14)
    m = method_from_config(name, {})
    m.objective.bind(c["student_hidden"].shape[-1], c["teacher_hidden"].shape[-1])
    inputs = {k: c[k] for k in ("student_hidden", "teacher_hidden", "student_head", "teacher_head", "student_embed",
                                "teacher_embed", "input_ids")}
    zs = c["student_logits"].clone().requires_grad_(True)
    loss, stats = m.loss(zs, c["teacher_logits"], c["labels"], torch.full((2,), 0.5), torch.ones(2, dtype=bool),
                         None, **inputs)
    div = call(m.objective, c)
    mask = c["mask"]
    expected = ((0.5 * div + 0.5 * token_ce(c["student_logits"], c["labels"])) * mask).sum() / mask.sum()
    assert torch.allclose(loss, expected, atol=1e-5)
    loss.backward()
    assert torch.isfinite(zs.grad).all() and zs.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.objective.parameters())


# ---- DSKD with cross-model attention --------------------------------------------------------------------------------

def test_cma_core_takes_a_teacher_of_its_own_length_vocabulary_and_width():
    c = cross_case(seed=20)
    obj = build(DSKDCMA, c)
    al = cross_model_attention(
        query=obj.query, t2s=obj.t2s, s2t=obj.s2t, student_ids=c["input_ids"], student_targets=c["labels"],
        student_mask=c["mask"], student_hidden=c["student_hidden"], student_embed=c["student_embed"],
        teacher_ids=c["teacher_input_ids"], teacher_targets=c["teacher_labels"],
        teacher_mask=c["teacher_labels"] != -100, teacher_hidden=c["teacher_hidden"],
        teacher_embed=c["teacher_embed"])
    s_mask, t_mask = c["mask"], c["teacher_labels"] != -100
    assert al.t2s_hidden.shape == (2, 6, 4) and al.s2t_hidden.shape == (2, 9, 6)
    assert al.t2s_weights.shape == (2, 6, 9) and al.s2t_weights.shape == (2, 9, 6)
    # each valid student token attends over its row's teacher response tokens only, and vice versa
    assert torch.allclose(al.t2s_weights.sum(-1)[s_mask], torch.ones(int(s_mask.sum())))
    assert (al.t2s_weights * ~t_mask.unsqueeze(1) == 0).all() and (al.t2s_weights[~s_mask] == 0).all()
    assert torch.allclose(al.s2t_weights.sum(-1)[t_mask], torch.ones(int(t_mask.sum())))
    assert (al.s2t_weights * ~s_mask.unsqueeze(1) == 0).all() and (al.s2t_weights[~t_mask] == 0).all()
    assert (al.t2s_hidden[~s_mask] == 0).all() and (al.s2t_hidden[~t_mask] == 0).all()


@pytest.mark.parametrize("tau,correct_only", [(1.0, True), (2.0, True), (1.0, False)])
def test_cma_matches_numpy_with_a_different_teacher(tau, correct_only):
    c = cross_case(seed=21)
    obj = build(DSKDCMA, c, t2s_correct_only=correct_only)
    out = call(obj, c, tau)
    assert out.shape == c["mask"].shape and (out[~c["mask"]] == 0).all()
    np.testing.assert_allclose(out.detach().numpy(), np_cma(c, obj, tau, correct_only), rtol=1e-4, atol=1e-5)


def test_cma_matches_numpy_in_the_shared_tokenizer_workflow():
    """Teacher ids / targets default to input_ids / labels; the teacher-space KL is added at the same positions."""
    c = dskd_case(seed=22, Hs=5, Ht=7)
    obj = build(DSKDCMA, c, t2s_correct_only=False)
    out = call(obj, c)
    ref = dict(c, teacher_input_ids=c["input_ids"], teacher_labels=c["labels"])
    np.testing.assert_allclose(out.detach().numpy(), np_cma(ref, obj, 1.0, False), rtol=1e-4, atol=1e-5)
    assert (out[~c["mask"]] == 0).all() and (out[c["mask"]] > 0).all()


def test_cma_with_identity_projectors_by_hand():
    """One teacher token per row and Hs == Ht, identity t2s / s2t: every student token's aligned teacher state is
    h_T / std(h_T) + E_T(y_T) / std(E_T(y_T)), every teacher token's student state is the attention-weighted h_S."""
    c = cross_case(seed=23, Hs=4, Ht=4, t_mask=torch.tensor([[0, 0, 1, 0, 0, 0, 0, 0, 0],
                                                             [0, 0, 0, 0, 0, 1, 0, 0, 0]], dtype=torch.bool))
    obj = build(DSKDCMA, c, t2s_correct_only=False)
    with torch.no_grad():
        for lin in (obj.t2s, obj.s2t):
            lin.weight.copy_(torch.eye(4))
            lin.bias.zero_()
    out = call(obj, c).detach().numpy()
    et, ht = npa(c["teacher_embed"]), npa(c["teacher_hidden"])
    tj = [2, 5]
    y_t = [int(c["teacher_labels"][b, tj[b]]) for b in range(2)]
    sig_y = np.std(np.stack([et[y] for y in y_t]), ddof=1)
    sig_h = np.std(np.stack([ht[b, tj[b]] for b in range(2)]), ddof=1)
    zs, ws, wt, zt = (npa(c[k]) for k in ("student_logits", "student_head", "teacher_head", "teacher_logits"))
    for b in range(2):
        I = np.nonzero(c["mask"][b].numpy())[0]
        aligned = ht[b, tj[b]] / sig_h + et[y_t[b]] / sig_y
        # the single teacher token attends over the row's student tokens with the CMA scores
        q = np_linear(obj.query)(np.concatenate([npa(c["student_embed"])[c["input_ids"][b, I]],
                                                 npa(c["student_embed"])[c["labels"][b, I]]], -1))
        k = np.concatenate([et[int(c["teacher_input_ids"][b, tj[b]])], et[y_t[b]]])
        sig_k = np.std(np.concatenate([np.stack([et[int(c["teacher_input_ids"][r, tj[r]])] for r in range(2)]),
                                       np.stack([et[y] for y in y_t])], -1), ddof=1)
        a = np_softmax(q @ (k / sig_k) / math.sqrt(8))
        h_s2t = a @ npa(c["student_hidden"])[b, I]
        kl_t = np_kl_logits(zt[b, tj[b]], h_s2t @ wt.T)
        for i in I:
            l = aligned @ ws.T
            hand = np_ce(l, int(c["labels"][b, i])) + np_kl_logits(l, zs[b, i]) + kl_t / len(I)
            assert out[b, i] == pytest.approx(hand, rel=1e-4, abs=1e-5)


def test_cma_student_space_kl_counts_only_where_t2s_predicts_the_target():
    t_mask = torch.zeros(2, 9, dtype=torch.bool)
    t_mask[:, 4] = True  # one teacher token per row: its aligned state does not depend on the student's labels
    c = cross_case(seed=24, t_mask=t_mask)
    gated, full = build(DSKDCMA, c, t2s_correct_only=True), build(DSKDCMA, c, t2s_correct_only=False)
    al = cross_model_attention(
        query=full.query, t2s=full.t2s, s2t=full.s2t, student_ids=c["input_ids"], student_targets=c["labels"],
        student_mask=c["mask"], student_hidden=c["student_hidden"], student_embed=c["student_embed"],
        teacher_ids=c["teacher_input_ids"], teacher_targets=c["teacher_labels"], teacher_mask=t_mask,
        teacher_hidden=c["teacher_hidden"], teacher_embed=c["teacher_embed"])
    pred = (al.t2s_hidden @ c["student_head"].T).argmax(-1)
    labels = c["labels"].clone()
    labels[0, 2] = pred[0, 2]                    # t2s right here
    labels[0, 3] = (pred[0, 3] + 1) % 11         # and wrong here
    c["labels"] = labels
    gap = (call(full, c) - call(gated, c)).detach()
    assert gap[0, 2] == 0 and gap[0, 3] > 0
    assert (gap >= 0).all()


@pytest.mark.parametrize("side", ["right", "left"])
def test_cma_is_invariant_to_the_teacher_sides_padding(side):
    c = cross_case(seed=25)
    obj = build(DSKDCMA, c, t2s_correct_only=False)
    base = call(obj, c)
    g = torch.Generator().manual_seed(99)
    pad = 4
    padded = dict(c)
    for k, fill in (("teacher_logits", lambda s: 50 * torch.randn(*s, generator=g)),
                    ("teacher_hidden", lambda s: 50 * torch.randn(*s, generator=g)),
                    ("teacher_input_ids", lambda s: torch.randint(0, 17, s, generator=g)),
                    ("teacher_labels", lambda s: torch.full(s, -100))):
        extra = fill((2, pad) + tuple(c[k].shape[2:]))
        padded[k] = torch.cat([c[k], extra] if side == "right" else [extra, c[k]], 1)
    out = call(obj, padded)
    assert torch.allclose(out, base, atol=1e-6, rtol=1e-6)
    assert base.abs().sum() > 0


def test_cma_gradient_reaches_student_and_projectors_never_the_teacher():
    c = cross_case(seed=26)
    hs = c["student_hidden"].clone().requires_grad_(True)
    ws = c["student_head"].clone().requires_grad_(True)
    es = c["student_embed"].clone().requires_grad_(True)
    c.update(student_hidden=hs, student_head=ws, student_embed=es, student_logits=hs @ ws.T)
    c["student_logits"].retain_grad()
    for k in TEACHER:
        c[k] = c[k].clone().requires_grad_(True)
    obj = build(DSKDCMA, c, t2s_correct_only=False)
    call(obj, c).sum().backward()
    assert c["student_logits"].grad.abs().sum() > 0 and hs.grad.abs().sum() > 0 and ws.grad.abs().sum() > 0
    for name, p in obj.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert no_grad_reached(es)  # the reference detaches the student's embeddings in the query
    for k in TEACHER:
        assert no_grad_reached(c[k]), k


def test_cma_rows_without_teacher_tokens_give_zero():
    t_mask = torch.zeros(2, 9, dtype=torch.bool)
    t_mask[0, 3:6] = True  # row 1 has no teacher response token
    c = cross_case(seed=27, t_mask=t_mask)
    out = call(build(DSKDCMA, c), c)
    assert (out[1] == 0).all() and (out[0][c["mask"][0]] > 0).all() and torch.isfinite(out).all()


def test_objective_logs_its_terms_per_step():
    c = dskd_case(seed=28)
    obj = build(DSKD, c)
    out = call(obj, c)
    obj.after_step(float(out.detach().sum()), 1, 10)
    logged = obj.log_values()
    assert set(logged) == {"dskd/t2s_ce", "dskd/t2s_kl", "dskd/s2t_kl", "dskd/t2s_acc"}
    assert logged["dskd/t2s_ce"] + logged["dskd/t2s_kl"] + logged["dskd/s2t_kl"] == pytest.approx(
        float(out.detach().sum() / c["mask"].sum()), rel=1e-5)
