"""Generalised Jensen-Shannon divergence (Agarwal et al. 2024, GKD), in TRL's convention.

JSD_beta = beta * KL(p || M) + (1 - beta) * KL(q || M), M = beta * p + (1 - beta) * q, p = teacher, q = student,
both at temperature tau, in float32, true-KL form. As TRL's GKDTrainer.generalized_jsd_loss does, the two ends are
special-cased: beta = 0 is exactly the forward KL(p || q) and beta = 1 exactly the reverse KL(q || p) (the formula
itself would give 0 there). For 0 < beta < 1 the value is bounded and finite whatever the logits; at beta = 1 a
-inf teacher logit is handled as in `rkl` (log p read as LOG_FLOOR).
"""
from __future__ import annotations

import torch

from scd.distill.losses import kl_from_log_probs, log_mixture, student_teacher_log_probs
from scd.distill.parts import register_divergence
from scd.tokens import mask_tokens


@register_divergence("jsd", reference="Agarwal et al. 2024, On-Policy Distillation of Language Models (GKD); "
                                      "huggingface/trl GKDTrainer.generalized_jsd_loss")
def jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
        temperature: float = 1.0, *, beta: float = 0.5) -> torch.Tensor:
    """Generalised JSD beta*KL(p||M) + (1-beta)*KL(q||M), M = beta*p + (1-beta)*q; beta 0 = FKL, 1 = RKL."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"jsd: beta must be in [0, 1], got {beta}")
    logq, logp = student_teacher_log_probs(student_logits, teacher_logits, temperature)
    if beta == 0.0:
        tok = kl_from_log_probs(logp, logq)
    elif beta == 1.0:
        tok = kl_from_log_probs(logq, logp)
    else:
        logm = log_mixture(logp, logq, beta)
        tok = beta * kl_from_log_probs(logp, logm) + (1.0 - beta) * kl_from_log_probs(logq, logm)
    return mask_tokens(tok, mask)
