"""Sample weightings: the per-sample weight w of the divergence against gold CE, L_i = w_i*D_i + (1-w_i)*CE_i."""
from __future__ import annotations

import torch

from scd.distill.parts import register_weighting


@register_weighting("none")
class ConstantWeight:
    """The plain mix: every sample gets w = alpha."""

    def __init__(self, **options):
        if options:
            raise ValueError(f"weighting 'none' takes no options, got {sorted(options)}")

    def weights(self, batch: dict, alpha: float) -> torch.Tensor:
        return torch.full((batch["input_ids"].shape[0],), float(alpha))
