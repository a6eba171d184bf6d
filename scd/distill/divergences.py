"""The core divergence: none (the CE term alone). The token-level divergences of the baselines live in
baselines/*.py; their shared numerics in scd/distill/losses.py."""
from __future__ import annotations

import torch

from scd.distill.parts import register_divergence


@register_divergence("none", reference="no divergence: the loss is the CE term alone (e.g. sequence-level KD)")
def no_divergence(student_logits, teacher_logits, mask, temperature=1.0):
    """Zero everywhere: pure CE on the rows' targets; needs no teacher logits."""
    return torch.zeros(mask.shape, device=mask.device)


no_divergence.needs_teacher = False
no_divergence.trains_student = False  # constant: no gradient (scd/distill/checks.py leaves that property out)
