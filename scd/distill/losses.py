"""Token-level losses and their reduction. All in float32; masked positions contribute exactly zero.

Labels are pre-shifted (see scd/data.py): logits[:, t] are scored against labels[:, t]; IGNORE marks no target.
Reduction convention: a batch loss is the sum over valid tokens divided by the number of valid tokens (so each
response token counts once, whatever the sample lengths); an all-masked batch gives 0, not 0/0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from scd.data import IGNORE


def response_mask(labels: torch.Tensor) -> torch.Tensor:
    return labels != IGNORE


def token_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy [B, T] of the gold labels, 0 where masked."""
    mask = response_mask(labels)
    safe = torch.where(mask, labels, torch.zeros_like(labels))
    logp = F.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return torch.where(mask, nll, torch.zeros_like(nll))


def masked_mean(tok_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Global token mean over valid positions; 0 for an empty mask."""
    return (tok_loss * mask).sum() / mask.sum().clamp(min=1)


def per_sample_mean(tok_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each sample's valid tokens [B]; 0 for a sample without any."""
    return (tok_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)
