"""Vanilla KD (Hinton et al. 2015): forward KL from the teacher to the student at temperature tau.

Pinned conventions: the true KL sum_v p (log p - log q), not the cross-entropy form; softmax in float32 at
temperature tau for both models; the tau^2 factor is the method's `tau_squared` switch, off by default.
Numerics (scd.distill.losses.kl_from_log_probs): p = 0 entries (a -inf teacher logit) contribute 0; a -inf student
logit where p > 0 (an infinite KL) is read as log q = LOG_FLOOR (log of the smallest normal float32), so finite.
"""
from __future__ import annotations

import torch

from scd.distill.losses import kl_from_log_probs, student_teacher_log_probs
from scd.distill.parts import register_divergence
from scd.tokens import mask_tokens


@register_divergence("fkl", reference="Hinton et al. 2015, Distilling the Knowledge in a Neural Network")
def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
               temperature: float = 1.0) -> torch.Tensor:
    """KL(p_teacher || q_student) per token [B, T]; 0 where mask is False."""
    logq, logp = student_teacher_log_probs(student_logits, teacher_logits, temperature)
    return mask_tokens(kl_from_log_probs(logp, logq), mask)
