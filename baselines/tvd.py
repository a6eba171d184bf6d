"""Total variation distance between the teacher's and the student's next-token distributions.

TVD = 0.5 * sum_v |p - q| in [0, 1], at temperature tau for both models, in float32 (Wen et al. 2023, f-divergence
minimisation for sequence-level KD). No logarithms: -inf logits (probability 0) need no special handling.
"""
from __future__ import annotations

import torch

from scd.distill.losses import student_teacher_log_probs
from scd.distill.parts import register_divergence
from scd.tokens import mask_tokens


@register_divergence("tvd", reference="Wen et al. 2023, f-Divergence Minimization for Sequence-Level Knowledge "
                                      "Distillation (ACL); MANGA-UOFA/fdistill")
def tvd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
        temperature: float = 1.0) -> torch.Tensor:
    """Total variation 0.5 * sum_v |p_teacher - q_student| per token [B, T]; 0 where mask is False."""
    logq, logp = student_teacher_log_probs(student_logits, teacher_logits, temperature)
    tok = 0.5 * (logp.exp() - logq.exp()).abs().sum(-1)
    return mask_tokens(tok, mask)
