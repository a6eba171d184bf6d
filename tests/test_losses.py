"""The distillation loss against values worked out by hand, and its behaviour on degenerate batches."""
import math

import torch

from baselines.kd import forward_kl
from scd.data import IGNORE
from scd.distill.methods import method_from_config
from scd.tokens import masked_mean, per_sample_mean, token_ce

LN3 = math.log(3.0)


def td(alpha=0.5, temperature=1.0, tau_squared=False):
    return method_from_config("td", {"schedule": "best", "divergence": "fkl", "weighting": "none",
                                     "alpha": alpha, "temperature": temperature, "tau_squared": tau_squared})


def one_token(teacher, student, label):
    """A batch of one sample with one response token."""
    return (torch.tensor([[student]], dtype=torch.float32), torch.tensor([[teacher]], dtype=torch.float32),
            torch.tensor([[label]]))


def test_forward_kl_hand_value():
    # teacher logits [0, ln 3] -> p = [1/4, 3/4]; student logits [0, 0] -> q = [1/2, 1/2]
    s, t, lab = one_token([0.0, LN3], [0.0, 0.0], 1)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert math.isclose(expected, 0.1308120, rel_tol=1e-6)
    kl = forward_kl(s, t, lab != IGNORE)
    assert torch.allclose(kl, torch.tensor([[expected]]), atol=1e-6)


def test_kd_loss_mixes_kl_and_ce_with_alpha():
    s, t, lab = one_token([0.0, LN3], [0.0, 0.0], 1)
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    ce = math.log(2.0)  # -log q(label) with q uniform over two tokens
    for alpha in (0.0, 0.3, 1.0):
        loss, stats = td(alpha).loss(s, t, lab, torch.tensor([alpha]))
        assert math.isclose(float(loss), (1 - alpha) * ce + alpha * kl, rel_tol=1e-6)
        assert math.isclose(stats["ce"], ce, rel_tol=1e-6) and math.isclose(stats["divergence"], kl, rel_tol=1e-6)


def test_temperature_and_tau_squared():
    s, t, lab = one_token([0.0, LN3], [0.0, 0.0], 1)
    # at tau = 2 the teacher's odds 3:1 become sqrt(3):1; the uniform student stays uniform
    p1 = math.sqrt(3) / (1 + math.sqrt(3))
    kl2 = (1 - p1) * math.log((1 - p1) / 0.5) + p1 * math.log(p1 / 0.5)
    assert torch.allclose(forward_kl(s, t, lab != IGNORE, temperature=2.0), torch.tensor([[kl2]]), atol=1e-6)
    loss, _ = td(1.0, 2.0, tau_squared=True).loss(s, t, lab, torch.tensor([1.0]))
    assert math.isclose(float(loss), 4 * kl2, rel_tol=1e-5)


def test_token_mean_over_valid_tokens_only():
    # Two samples: one with two response tokens, one with one; padding positions carry garbage logits.
    student = torch.zeros(2, 3, 2)
    teacher = torch.tensor([[[0.0, LN3], [0.0, 0.0], [50.0, -50.0]],
                            [[0.0, LN3], [9.0, -9.0], [-9.0, 9.0]]])
    labels = torch.tensor([[1, 0, IGNORE], [1, IGNORE, IGNORE]])
    kl_a = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    loss, _ = td(1.0).loss(student, teacher, labels, torch.ones(2))
    # valid tokens: (0,0) kl_a, (0,1) 0 (identical uniform), (1,0) kl_a -> mean over 3 tokens
    assert math.isclose(float(loss), 2 * kl_a / 3, rel_tol=1e-6)
    per = per_sample_mean(forward_kl(student, teacher, labels != IGNORE), labels != IGNORE)
    assert torch.allclose(per, torch.tensor([kl_a / 2, kl_a]), atol=1e-6)


def test_all_masked_batch_is_finite_zero():
    s, t = torch.randn(2, 4, 7), torch.randn(2, 4, 7)
    labels = torch.full((2, 4), IGNORE)
    s.requires_grad_(True)
    loss, stats = td().loss(s, t, labels, torch.full((2,), 0.5))
    assert torch.isfinite(loss) and float(loss.detach()) == 0.0
    loss.backward()
    assert torch.isfinite(s.grad).all()
    assert float(masked_mean(token_ce(s, labels), labels != IGNORE)) == 0.0


def test_empty_batch_is_finite_zero():
    loss, _ = td().loss(torch.zeros(0, 3, 5), torch.zeros(0, 3, 5), torch.zeros(0, 3, dtype=torch.long),
                        torch.zeros(0))
    assert float(loss) == 0.0


def test_minus_inf_teacher_logits_do_not_give_nan():
    s, t, lab = one_token([0.0, LN3, -math.inf], [0.0, 0.0, 0.0], 1)
    kl = forward_kl(s, t, lab != IGNORE)
    # p = [1/4, 3/4, 0]; q = [1/3, 1/3, 1/3]
    expected = 0.25 * math.log(0.25 * 3) + 0.75 * math.log(0.75 * 3)
    assert torch.isfinite(kl).all() and math.isclose(float(kl), expected, rel_tol=1e-6)


def test_zero_when_student_equals_teacher_and_gradient_only_into_student():
    z = torch.randn(3, 5, 11)
    labels = torch.randint(0, 11, (3, 5))
    assert torch.allclose(forward_kl(z, z, labels != IGNORE), torch.zeros(3, 5), atol=1e-6)
    student = torch.randn(3, 5, 11, requires_grad=True)
    teacher = torch.randn(3, 5, 11, requires_grad=True)
    weights = torch.full((3,), 0.5, requires_grad=True)
    loss, _ = td().loss(student, teacher, labels, weights)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None and weights.grad is None


def test_losses_run_in_float32_for_bf16_logits():
    s = torch.randn(2, 3, 6).to(torch.bfloat16)
    t = torch.randn(2, 3, 6).to(torch.bfloat16)
    labels = torch.randint(0, 6, (2, 3))
    assert forward_kl(s, t, labels != IGNORE).dtype == torch.float32
    loss, _ = td().loss(s, t, labels, torch.full((2,), 0.5))
    assert loss.dtype == torch.float32


def test_unlabelled_rows_take_the_divergence_alone():
    # row 0 labelled (w = 0.5 mixes KL and CE), row 1 a transfer row: w forced to 1, no CE
    s = torch.zeros(2, 1, 2)
    t = torch.tensor([[[0.0, LN3]], [[0.0, LN3]]])
    labels = torch.tensor([[1], [1]])
    kl, ce = 0.25 * math.log(0.5) + 0.75 * math.log(1.5), math.log(2.0)
    loss, stats = td(0.5).loss(s, t, labels, torch.tensor([0.2, 0.9]), torch.tensor([True, False]))
    assert math.isclose(float(loss), ((0.2 * kl + 0.8 * ce) + kl) / 2, rel_tol=1e-6)
    assert math.isclose(stats["weight_mean"], 0.2, rel_tol=1e-6)  # the weighting's choice on labelled rows only
