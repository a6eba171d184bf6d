"""Skew KL and skew reverse KL: DistiLLM's losses (Ko et al. ICML 2024; jongwooko/distillm), without its adaptive
off-policy responses (the whole method is `distillm`, baselines/distillm.py).

skew_kl  = KL(p || a p + (1 - a) q)   (forward direction, the student's side smoothed by the teacher)
skew_rkl = KL(q || (1 - a) p + a q)   (reverse direction, the teacher's side smoothed by the student)
with a = `skew` in [0, 1] (DistiLLM's default 0.1), p = teacher, q = student at temperature tau, true-KL form in
float32. skew 0 gives plain FKL / RKL; skew 1 gives 0. For skew > 0 the mixture is positive wherever the left-hand
distribution is, so the value is finite for any logits; at skew = 0, skew_rkl handles a -inf teacher logit as `rkl`.
The reference (distillm/losses.py) logs skew KL in the cross-entropy form -sum p log(a p + (1 - a) q) (same
gradient; ours is the true KL, 0 at p = q) and has no temperature (tau 1, ours by default too).
"""
from __future__ import annotations

import torch

from scd.distill.losses import kl_from_log_probs, log_mixture, student_teacher_log_probs
from scd.distill.parts import register_divergence, register_method
from scd.tokens import mask_tokens

REFERENCE = "Ko et al. 2024, DistiLLM: Towards Streamlined Distillation for LLMs (ICML); jongwooko/distillm"


def _check(skew: float) -> None:
    if not 0.0 <= skew <= 1.0:
        raise ValueError(f"skew must be in [0, 1], got {skew}")


@register_divergence("skew_kl", reference=REFERENCE)
def skew_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
            temperature: float = 1.0, *, skew: float = 0.1) -> torch.Tensor:
    """Skew forward KL(p || skew*p + (1-skew)*q) per token [B, T] (DistiLLM SKL)."""
    _check(skew)
    logq, logp = student_teacher_log_probs(student_logits, teacher_logits, temperature)
    return mask_tokens(kl_from_log_probs(logp, log_mixture(logp, logq, skew)), mask)


@register_divergence("skew_rkl", reference=REFERENCE)
def skew_rkl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
             temperature: float = 1.0, *, skew: float = 0.1) -> torch.Tensor:
    """Skew reverse KL(q || (1-skew)*p + skew*q) per token [B, T] (DistiLLM SRKL)."""
    _check(skew)
    logq, logp = student_teacher_log_probs(student_logits, teacher_logits, temperature)
    return mask_tokens(kl_from_log_probs(logq, log_mixture(logq, logp, skew)), mask)


# The loss alone, on gold responses with the suite's CE mix: rows named as DistiLLM's loss, not as DistiLLM (the
# method, with its adaptive off-policy responses, is `distillm` in baselines/distillm.py).
register_method("skew_kl", reference=REFERENCE, display="skew KL (DistiLLM's loss)", divergence="skew_kl")
register_method("skew_rkl", reference=REFERENCE, display="skew reverse KL (DistiLLM's loss)", divergence="skew_rkl")
