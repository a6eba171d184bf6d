"""The baselines as their authors ran them: TAID's adaptive update reads the reference's loss value, the reference
presets beside the suite's common ones (from the registry), DistiLLM's adaptive off-policy responses."""
import math

import pytest
import torch

from scd.distill.parts import DIVERGENCES
from scd.distill.plugins import load_plugins

load_plugins()


def _softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def _taid_terms(zs, zt, t):
    """By hand: p_t = softmax((1 - t) z_S + t z_T), q = softmax(z_S); (cross-entropy form, true KL) of p_t vs q."""
    pt, q = _softmax([(1 - t) * s + t * u for s, u in zip(zs, zt)]), _softmax(zs)
    ce = -sum(p * math.log(x) for p, x in zip(pt, q))
    kl = sum(p * math.log(p / x) for p, x in zip(pt, q))
    return ce, kl


def _update(values, t_start=0.4, t_end=1.0, alpha=0.5, beta=0.5, total=1000):
    """TAID's update by hand over a sequence of per-step loss values: t after each step."""
    t, m, prev, out = t_start, 0.0, None, []
    for step, v in enumerate(values, 1):
        if prev is not None:
            m = beta * m + (1 - beta) * (prev - v) / (prev + 1e-15)
            ramp = t_start + (t_end - t_start) * (step - 1) / total
            t = min(t_end, max(ramp, t + alpha * (1 / (1 + math.exp(-m))) * (1 - t)))
        prev = v
        out.append(t)
    return out


def test_taid_update_reads_the_cross_entropy_form_loss_as_the_reference_does():
    """Three steps on a 3-token vocabulary whose p_t changes entropy between steps: t follows the update computed by
    hand from -sum p_t log q (the reference's `distil_loss`), not from the true KL the loss trains on."""
    zt = [0.0, 2.0, 0.5]
    students = [[3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 1.5, 0.2]]
    taid = DIVERGENCES.get("taid")(alpha=0.5, beta=0.5).train()
    mask = torch.ones(1, 1, dtype=torch.bool)
    ts, ces, kls = [], [], []
    for step, zs in enumerate(students, 1):
        ce, kl = _taid_terms(zs, zt, float(taid.t))
        ces.append(ce)
        kls.append(kl)
        value = taid(torch.tensor([[zs]]), torch.tensor([[zt]]), mask)
        assert float(value.sum()) == pytest.approx(kl, rel=1e-5)  # what it trains on and logs: the true KL
        taid.after_step(123.0, step, 1000)  # the step's total loss is not what it reads
        ts.append(float(taid.t))
    expected, from_kl = _update(ces), _update(kls)
    assert ts == pytest.approx(expected, abs=1e-6)
    assert abs(expected[-1] - from_kl[-1]) > 1e-3  # the two readings give different t: the test tells them apart


def test_taid_ramp_counts_the_steps_before_this_one():
    """Non-adaptive, t is the ramp at the reference's progress: global_step (steps done before this one) / total."""
    taid = DIVERGENCES.get("taid")(adaptive=False).train()
    mask = torch.ones(1, 1, dtype=torch.bool)
    ts = []
    for step in range(1, 5):
        taid(torch.randn(1, 1, 5), torch.randn(1, 1, 5), mask)
        taid.after_step(0.0, step, 10)
        ts.append(float(taid.t))
    assert ts == pytest.approx([0.4, 0.4 + 0.6 * 1 / 10, 0.4 + 0.6 * 2 / 10, 0.4 + 0.6 * 3 / 10])
