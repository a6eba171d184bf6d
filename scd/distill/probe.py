"""A fixed probe set of training rows, and the KL divergences between model distributions on it.

SCD compares teacher checkpoints with each other and with the current student on the same response tokens. The
probe keeps only response positions (log-probabilities in float32, [tokens, vocab]), so comparisons are cheap;
teacher distributions come from the cached teacher logits of the same rows (scd/distill/teacher.py).
"""
from __future__ import annotations

import torch

from scd.data import Encoded
from scd.tokens import by_chunks


class ProbeSet:
    def __init__(self, rows: list[Encoded], indices: list[int], pad_id: int, vocab_size: int, batch_size: int = 64):
        self.rows, self.indices = rows, indices  # rows[k] is training row indices[k]
        self.pad_id, self.vocab, self.batch_size = pad_id, vocab_size, batch_size

    @classmethod
    def sample(cls, data: list[Encoded], size: int, seed: int, pad_id: int, vocab_size: int) -> "ProbeSet":
        """`size` rows drawn without replacement from the training data, fixed by `seed`."""
        g = torch.Generator().manual_seed(seed)
        idx = sorted(torch.randperm(len(data), generator=g)[: min(size, len(data))].tolist())
        return cls([data[i] for i in idx], idx, pad_id, vocab_size)


def mean_kl(logp: torch.Tensor, logq: torch.Tensor) -> float:
    """KL(p || q) per token, averaged over tokens; 0 for an empty probe."""
    if logp.numel() == 0:
        return 0.0
    return float(by_chunks(_kl_rows, logp, logq).mean())  # one chunk of [tokens, vocab] products at a time


def _kl_rows(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1)
