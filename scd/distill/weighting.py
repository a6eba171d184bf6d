"""Sample weightings: the per-sample weight w of the divergence against gold CE, L_i = w_i*D_i + (1-w_i)*CE_i.

A weighting may look at the stage context when a stage begins (`begin_stage`), then answers `weights(batch)` for
the rows of each batch (by their index in the training set). Weights never carry gradient.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from scd.distill.parts import register_weighting

if TYPE_CHECKING:  # annotations only: importing it would load the models' stack
    from scd.distill.context import StageContext


@register_weighting("none", reference="the fixed CE mix of vanilla KD, Hinton et al. 2015")
class ConstantWeight:
    """The plain mix: every sample gets w = alpha."""

    def __init__(self, **options):
        if options:
            raise ValueError(f"weighting 'none' takes no options, got {sorted(options)}")

    def begin_stage(self, ctx: StageContext, teacher: str) -> None:
        pass

    def weights(self, batch: dict, alpha: float) -> torch.Tensor:
        return torch.full((batch["input_ids"].shape[0],), float(alpha))


def adaptive_weights(student_sft_loss: torch.Tensor, teacher_loss: torch.Tensor) -> torch.Tensor:
    """w = L_Ssft / (L_Ssft + L_c) = sigmoid(log L_Ssft - log L_c); 1/2 where both losses are 0."""
    s, t = student_sft_loss.detach().float(), teacher_loss.detach().float()
    total = s + t
    return torch.where(total > 0, s / total.clamp(min=1e-12), torch.full_like(total, 0.5))


@register_weighting("aw", reference="AW, arXiv 2601.10114")
class AdaptiveWeight:
    """AW: w_i = L_Ssft(i) / (L_Ssft(i) + L_c(i)): imitate the teacher where it is better, the gold label where
    the student-SFT model is. L_Ssft from the frozen student-SFT model (once), L_c from the selected checkpoint
    (recomputed when the checkpoint changes); gold NLL, mean over the row's response tokens. Ignores alpha."""

    def __init__(self, **options):
        if options:
            raise ValueError(f"weighting 'aw' takes no options, got {sorted(options)}")
        self._w: torch.Tensor | None = None

    def begin_stage(self, ctx: StageContext, teacher: str) -> None:
        self._w = adaptive_weights(ctx.student_sft_losses(), ctx.teacher_losses(teacher))

    @property
    def current(self) -> torch.Tensor | None:
        return self._w

    def weights(self, batch: dict, alpha: float) -> torch.Tensor:
        # Rows past the labelled training set are transfer rows; the loss gives them w = 1 whatever this says.
        idx = batch["index"].cpu()
        return torch.where(idx < len(self._w), self._w[idx.clamp(max=len(self._w) - 1)], torch.ones(len(idx)))
