"""Vanilla KD (Hinton et al. 2015): forward KL from the teacher to the student at temperature tau.

Pinned conventions: the true KL sum_v p (log p - log q), not the cross-entropy form; softmax in float32 at
temperature tau for both models; the tau^2 factor is the method's `tau_squared` switch, off by default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from scd.distill.parts import register_divergence


@register_divergence("fkl")
def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
               temperature: float = 1.0) -> torch.Tensor:
    """KL(p_teacher || q_student) per token [B, T]; 0 where mask is False."""
    logp = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    logq = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p = logp.exp()
    # p = 0 (e.g. a -inf teacher logit) contributes 0, not 0 * -inf = NaN.
    terms = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))
    kl = terms.sum(-1)
    return torch.where(mask, kl, torch.zeros_like(kl))
