"""Shared numerics of the token-level divergences (baselines/*.py).

All take and return float32 log-probabilities over the last (vocabulary) axis and never produce NaN, in the value
or in the gradient, for -inf logits: a zero-probability entry of the first argument of a KL contributes exactly 0,
and a zero-probability entry of the second one (where the first is positive: the KL is +inf mathematically) is
read as LOG_FLOOR, i.e. as if that probability were the smallest normal float32, so the loss stays finite.
Token-level reductions (masks, chunking, CE) live in scd/tokens.py.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_FLOOR = math.log(torch.finfo(torch.float32).tiny)  # log(2**-126) = -87.3365...


def log_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) over the vocabulary, in float32."""
    return F.log_softmax(logits.float() / temperature, dim=-1)


def kl_from_log_probs(loga: torch.Tensor, logb: torch.Tensor) -> torch.Tensor:
    """True KL(a || b) = sum_v a (log a - log b) over the last axis, from log-probabilities, NaN-free.

    a = 0 entries contribute 0 (not 0 * -inf); b = 0 entries (log b = -inf) with a > 0 count as log b = LOG_FLOOR.
    Only exact -inf is replaced, so finite log-probabilities (and their gradients) are used as they are."""
    a = loga.exp()
    la = torch.where(a > 0, loga, torch.zeros_like(loga))  # a = 0: the term is 0 * finite, and so is its gradient
    lb = torch.where(torch.isneginf(logb), torch.full_like(logb, LOG_FLOOR), logb)
    return (a * (la - lb)).sum(-1)


def log_mixture(loga: torch.Tensor, logb: torch.Tensor, weight: float) -> torch.Tensor:
    """log(weight * a + (1 - weight) * b) elementwise, from log-probabilities, via logaddexp (weight in [0, 1]).

    Entries where both a and b are 0 give -inf with a zero (not NaN) gradient."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"mixture weight must be in [0, 1], got {weight}")
    if weight == 1.0:
        return loga
    if weight == 0.0:
        return logb
    both = torch.isneginf(loga) & torch.isneginf(logb)
    zero = torch.zeros_like(loga)
    m = torch.logaddexp(torch.where(both, zero, loga) + math.log(weight),
                        torch.where(both, zero, logb) + math.log1p(-weight))
    return torch.where(both, torch.full_like(m, -math.inf), m)


def student_teacher_log_probs(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                              temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(log q, log p): the student's and the teacher's float32 log-probabilities at `temperature`; the teacher side
    is detached, so a divergence built on them sends gradient only into the student."""
    return log_probs(student_logits, temperature), log_probs(teacher_logits.detach(), temperature)
