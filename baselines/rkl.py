"""Reverse KL: KL(q_student || p_teacher) per token, the mode-seeking direction.

Pinned conventions: true KL sum_v q (log q - log p) at temperature tau for both models, in float32, no tau^2 here.
Where the teacher gives probability 0 (a -inf logit) and the student does not, the reverse KL is +inf
mathematically; we return the finite value obtained by reading that log p as LOG_FLOOR = log(2**-126) = -87.34 (the
log of the smallest normal float32), i.e. a term q (log q + 87.34) that still pushes q down there
(scd.distill.losses.kl_from_log_probs). Finite but very negative teacher logits are used as they are.
"""
from __future__ import annotations

import torch

from scd.distill.losses import kl_from_log_probs, student_teacher_log_probs
from scd.distill.parts import register_divergence
from scd.tokens import mask_tokens


@register_divergence("rkl", reference="reverse KL, e.g. Gu et al. 2024 (MiniLLM), Agarwal et al. 2024 (GKD); "
                                      "jongwooko/distillm, songmzhang/DSKD")
def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
               temperature: float = 1.0) -> torch.Tensor:
    """KL(q_student || p_teacher) per token [B, T]; 0 where mask is False; p = 0 read as 2**-126."""
    logq, logp = student_teacher_log_probs(student_logits, teacher_logits, temperature)
    return mask_tokens(kl_from_log_probs(logq, logp), mask)
