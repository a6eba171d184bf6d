"""Teacher schedules (TD, CD, SCD) on constructed distributions, and adaptive weighting on known losses."""
import math
from types import SimpleNamespace

import pytest
import torch

from scd.distill.methods import method_from_config
from scd.distill.probe import mean_kl
from scd.distill.schedules import BestTeacher, FixedOrder, ScheduledCheckpoint
from scd.distill.weighting import AdaptiveWeight, adaptive_weights

# A teacher trajectory over a 3-token vocabulary: from nearly uniform (early) to peaked (T* = best).
TRAJECTORY = {"ckpt-1": [0.40, 0.30, 0.30], "ckpt-2": [0.60, 0.20, 0.20], "ckpt-3": [0.80, 0.10, 0.10],
              "best": [0.95, 0.025, 0.025]}
NAMES = list(TRAJECTORY)


def logp(probs):
    return torch.tensor([probs]).log()


def ctx(student, stage=0, n_stages=4, history=()):
    return SimpleNamespace(checkpoints=NAMES, stage=stage, n_stages=n_stages, history=list(history),
                           teacher_logprobs=lambda c: logp(TRAJECTORY[c]), student_logprobs=lambda: logp(student))


def test_mean_kl_hand_value():
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert mean_kl(logp([0.5, 0.5]), logp([0.25, 0.75])) == pytest.approx(expected, rel=1e-6)
    assert mean_kl(logp([0.5, 0.5]), logp([0.5, 0.5])) == pytest.approx(0.0, abs=1e-7)


def test_scd_picks_early_checkpoint_for_a_distant_student_and_reaches_best_as_it_approaches():
    scd = ScheduledCheckpoint(lam=1.0)
    far = scd.choose(ctx([0.34, 0.33, 0.33]))
    assert far in ("ckpt-1", "ckpt-2")
    picks = [scd.choose(ctx(s)) for s in ([0.34, 0.33, 0.33], [0.6, 0.2, 0.2], [0.8, 0.1, 0.1], [0.95, 0.025, 0.025])]
    order = [NAMES.index(p) for p in picks]
    assert order == sorted(order) and picks[-1] == "best" and picks[0] != "best"
    # the recorded terms are the definitions: performance = KL(T* || c), learnability = KL(S || c)
    terms = scd.scores[-1]["ckpt-2"]
    assert terms["performance"] == pytest.approx(mean_kl(logp(TRAJECTORY["best"]), logp(TRAJECTORY["ckpt-2"])))
    assert terms["score"] == pytest.approx(terms["performance"] + terms["learnability"])


def test_scd_with_lambda_zero_always_picks_the_checkpoint_nearest_best():
    scd = ScheduledCheckpoint(lam=0.0)
    for student in ([0.34, 0.33, 0.33], [0.6, 0.2, 0.2], [0.1, 0.8, 0.1]):
        assert scd.choose(ctx(student)) == "best"


def test_scd_monotone_never_goes_back_but_free_choice_may():
    near_best, uniform = [0.95, 0.025, 0.025], [0.34, 0.33, 0.33]
    free = ScheduledCheckpoint(lam=5.0)
    assert free.choose(ctx(uniform, history=["best"])) != "best"
    mono = ScheduledCheckpoint(lam=5.0, monotone=True)
    assert mono.choose(ctx(uniform, history=["ckpt-3"])) in ("ckpt-3", "best")
    assert mono.choose(ctx(near_best, history=["ckpt-2"])) == "best"


def test_scd_teacher_terms_are_computed_once():
    calls = []
    c = ctx([0.34, 0.33, 0.33])
    inner = c.teacher_logprobs
    c.teacher_logprobs = lambda name: calls.append(name) or inner(name)
    scd = ScheduledCheckpoint()
    scd.choose(c)
    first = len(calls)
    scd.choose(c)
    # the performance term is cached: the second stage only looks each checkpoint up for the learnability term
    assert len(calls) - first == len(NAMES)


def test_cd_visits_checkpoints_in_order_and_td_always_best():
    assert [FixedOrder().choose(ctx(None, stage=k, n_stages=4)) for k in range(4)] == NAMES
    assert [FixedOrder().choose(ctx(None, stage=k, n_stages=2)) for k in range(2)] == ["ckpt-2", "best"]
    assert {BestTeacher().choose(ctx(None, stage=k)) for k in range(4)} == {"best"}


def test_schedule_options_are_checked():
    with pytest.raises(ValueError, match="schedule ScheduledCheckpoint: .*lamda.*its options: lam, monotone"):
        method_from_config("m", {"schedule": "scd", "divergence": "fkl", "weighting": "none",
                                 "schedule_options": {"lamda": 1}})
    m = method_from_config("m", {"schedule": "scd", "divergence": "fkl", "weighting": "aw",
                                 "schedule_options": {"lam": 0.5}})
    assert m.schedule.lam == 0.5


def test_aw_formula_limits_and_no_gradient():
    s = torch.tensor([1.0, 2.0, 10.0, 0.01, 0.0], requires_grad=True)
    t = torch.tensor([1.0, 6.0, 0.01, 10.0, 0.0], requires_grad=True)
    w = adaptive_weights(s, t)
    assert w.tolist()[:2] == pytest.approx([0.5, 0.25])
    assert w[2] > 0.99 and w[3] < 0.01    # teacher far better -> imitate it; student-SFT far better -> gold label
    assert w[4] == 0.5 and torch.isfinite(w).all()
    assert not w.requires_grad
    # sigmoid form of the method doc
    assert w[1] == pytest.approx(torch.sigmoid(torch.log(torch.tensor(2.0 / 6.0))).item())


def test_aw_weights_follow_row_indices():
    aw = AdaptiveWeight()
    losses = {"sft": torch.tensor([1.0, 3.0, 1.0]), "best": torch.tensor([3.0, 1.0, 1.0])}
    c = SimpleNamespace(student_sft_losses=lambda: losses["sft"], teacher_losses=lambda name: losses[name])
    aw.begin_stage(c, "best")
    w = aw.weights({"index": torch.tensor([1, 0])}, alpha=0.5)
    assert w.tolist() == pytest.approx([0.75, 0.25])
