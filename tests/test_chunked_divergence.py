"""The loss over the response positions in chunks (scd.tokens.by_chunks): the same values and gradients as
in one piece, never more than one chunk of full-vocabulary tensors kept for the backward pass, and clean errors."""
import pytest
import torch

from scd.data import IGNORE
from scd.distill.methods import method_from_config
from scd.distill.parts import DIVERGENCES, Objective
from scd.distill.plugins import load_plugins
from scd.tokens import by_chunks, token_ce

load_plugins()
POSITIONWISE = [n for n in DIVERGENCES
                if getattr(DIVERGENCES.get(n), "positionwise", not isinstance(DIVERGENCES.get(n), type))
                and getattr(DIVERGENCES.get(n), "same_vocab", True)]


def batch(seed=0, b=3, t=7, v=50):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, t, v, generator=g) * 3
    te = torch.randn(b, t, v, generator=g) * 3
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[0, :2] = IGNORE  # a prompt
    labels[2, :] = IGNORE  # a row without a response
    labels[1, 5:] = IGNORE  # padding
    return s, te, labels


def loss_and_grad(name, chunk, s, t, labels):
    method = method_from_config(name, {"divergence": name, "alpha": 0.5})
    method.chunk_tokens = chunk
    if isinstance(method.divergence, Objective):
        method.divergence.train()
    s = s.clone().requires_grad_(True)
    loss, stats = method.loss(s, t, labels, torch.tensor([0.3, 0.8, 0.5]))
    loss.backward()
    return loss.detach(), s.grad, stats


def test_the_positionwise_divergences_are_found():
    assert {"fkl", "rkl", "jsd", "skew_kl", "akl", "tvd", "taid"} <= set(POSITIONWISE)


@pytest.mark.parametrize("name", POSITIONWISE)
@pytest.mark.parametrize("chunk", [1, 3, 4])
def test_chunked_loss_and_gradient_equal_the_one_piece_form(name, chunk):
    s, t, labels = batch()
    assert int((labels != IGNORE).sum()) > chunk  # more than one chunk, and a ragged last one for 3 and 4
    whole, g_whole, st_whole = loss_and_grad(name, None, s, t, labels)
    part, g_part, st_part = loss_and_grad(name, chunk, s, t, labels)
    assert torch.isfinite(whole) and float(whole) > 0
    assert torch.allclose(part, whole, rtol=1e-6, atol=1e-7)
    assert torch.allclose(g_part, g_whole, rtol=1e-5, atol=1e-8)
    assert st_part["divergence"] == pytest.approx(st_whole["divergence"], rel=1e-6)
    assert st_part["ce"] == pytest.approx(st_whole["ce"], rel=1e-6)


def test_chunked_ce_equals_the_hand_value():
    # logits [0, ln 3] at every position: -log softmax = [log 4, log 4/3]
    logits = torch.tensor([0.0, torch.log(torch.tensor(3.0))]).expand(2, 5, 2).clone()
    labels = torch.tensor([[0, 1, 1, IGNORE, 0], [IGNORE, 0, 1, 1, 1]])
    ce = token_ce(logits, labels, chunk_tokens=2)
    ln4, ln43 = torch.log(torch.tensor(4.0)), torch.log(torch.tensor(4 / 3))
    expected = torch.tensor([[ln4, ln43, ln43, 0, ln4], [0, ln4, ln43, ln43, ln43]])
    assert torch.allclose(ce, expected, atol=1e-6)


def test_empty_mask_gives_zero_and_a_finite_gradient():
    s, t, labels = batch()
    labels[:] = IGNORE
    loss, grad, stats = loss_and_grad("fkl", 2, s, t, labels)
    assert float(loss) == 0.0 and stats["divergence"] == 0.0 and stats["ce"] == 0.0
    assert grad is not None and torch.all(grad == 0)


def test_only_one_chunk_of_intermediates_is_kept_for_backward():
    """Autograd keeps the inputs of each checkpointed chunk (views of the logits), not its softmaxes: the bytes it
    saves grow with the vocabulary once, whatever the number of full-vocabulary intermediates the divergence makes."""
    s, t, labels = batch(b=4, t=16, v=2000)
    labels[:] = torch.randint(0, 2000, labels.shape)

    def saved_bytes(chunk):
        storages = {}  # views of one tensor (the chunks of the logits) share their storage: count it once

        def pack(x):
            storages[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
            return x

        method = method_from_config("jsd", {"divergence": "jsd"})
        method.chunk_tokens = chunk
        x = s.clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            method.loss(x, t, labels, torch.full((4,), 0.5))
        return sum(storages.values())

    n, v = 64, 2000
    one_piece, chunked = saved_bytes(None), saved_bytes(8)
    assert one_piece > 6 * n * v * 4  # JSD: softmaxes, logs and mixtures of both models, all kept
    assert chunked < 2.1 * n * v * 4  # the student's and the teacher's response rows, and small index tensors
    assert chunked < one_piece / 3


def test_by_chunks_calls_the_function_on_at_most_chunk_rows():
    seen = []

    def fn(x):
        seen.append(x.shape[0])
        return x.sum(-1)

    x = torch.randn(10, 4, requires_grad=True)
    out = by_chunks(fn, x, chunk_tokens=4)
    out.sum().backward()
    assert max(seen) <= 4 and sum(seen[:3]) == 10  # 4 + 4 + 2 in the forward, then recomputed in backward
    assert torch.allclose(x.grad, torch.ones(10, 4))


@pytest.mark.parametrize("bad", [0, -3, 2.5, "64"])
def test_invalid_chunk_size_says_what_is_allowed(bad):
    with pytest.raises(ValueError, match="chunk_tokens must be a positive integer"):
        by_chunks(lambda x: x.sum(-1), torch.randn(5, 3), chunk_tokens=bad)
