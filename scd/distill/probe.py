"""Token-level distributions of models on a fixed probe set, and the KL divergences between them.

SCD compares teacher checkpoints with each other and with the current student on the same response tokens; the
probe keeps only response positions (log-probabilities in float32, [tokens, vocab]) so the comparisons are cheap.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from scd.data import Encoded, collate
from scd.distill.losses import response_mask


class ProbeSet:
    def __init__(self, rows: list[Encoded], pad_id: int, vocab_size: int, batch_size: int = 64):
        self.rows, self.pad_id, self.vocab, self.batch_size = rows, pad_id, vocab_size, batch_size

    @classmethod
    def sample(cls, data: list[Encoded], size: int, seed: int, pad_id: int, vocab_size: int) -> "ProbeSet":
        """`size` rows drawn without replacement from the training data, fixed by `seed`."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(data), generator=g)[: min(size, len(data))].tolist()
        return cls([data[i] for i in sorted(idx)], pad_id, vocab_size)

    @torch.no_grad()
    def logprobs(self, logits_fn) -> torch.Tensor:
        """log-probabilities [response tokens, vocab] from `logits_fn(batch) -> logits [B, T, V]`."""
        out = []
        for start in range(0, len(self.rows), self.batch_size):
            batch = collate(self.rows[start: start + self.batch_size], self.pad_id)
            logits = logits_fn(batch)[..., : self.vocab].float()
            out.append(F.log_softmax(logits, -1)[response_mask(batch["labels"].to(logits.device))].cpu())
        return torch.cat(out) if out else torch.zeros(0, self.vocab)


def mean_kl(logp: torch.Tensor, logq: torch.Tensor) -> float:
    """KL(p || q) per token, averaged over tokens; 0 for an empty probe."""
    if logp.numel() == 0:
        return 0.0
    p = logp.exp()
    terms = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))
    return float(terms.sum(-1).mean())
