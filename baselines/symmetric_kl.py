"""Symmetric KL: KL(p || q) + KL(q || p), the SUM of forward and reverse KL (not their mean, and not the
lambda-weighted mix (1 - lam) * FKL + lam * RKL that some suites call "symmetric KL").

True-KL form at temperature tau for both models, in float32; -inf logits as in `fkl` / `rkl` (a zero probability on
the right-hand side of a KL is read as LOG_FLOOR = log(2**-126), so the value stays finite).
"""
from __future__ import annotations

import torch

from scd.distill.losses import kl_from_log_probs, student_teacher_log_probs
from scd.distill.parts import register_divergence
from scd.tokens import mask_tokens


@register_divergence("sym_kl", reference="Jeffreys divergence (FKL + RKL); cf. the lambda-mixed "
                                         "symmetric_kl of Wu et al. 2024, wutaiqiang/LLM_KD_AKL")
def symmetric_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    """KL(p||q) + KL(q||p) per token [B, T] (the sum, not the mean); 0 where mask is False."""
    logq, logp = student_teacher_log_probs(student_logits, teacher_logits, temperature)
    return mask_tokens(kl_from_log_probs(logp, logq) + kl_from_log_probs(logq, logp), mask)
