"""SCD's probe set, and the KL divergences between model distributions on it.

SCD compares teacher checkpoints with each other and with the current student on the same response tokens. The
probe keeps only response positions (log-probabilities in float32, [tokens, vocab]), so comparisons are cheap.
Where the rows come from is the schedule's `probe_source` (scd/distill/schedules.py):

- `train` (default): training rows with their gold responses; the teacher distributions come from the cached
  teacher logits of the same rows (scd/distill/teacher.py), no teacher runs.
- `validation`: validation rows with their gold responses; these are not in the teacher-output cache, so each
  checkpoint runs one forward pass over the probe rows alone, once per run (scd/distill/context.py).
- `transfer`: the task's transfer prompts, which have no gold response; every model is compared on T*'s greedy
  responses to them (one fixed set of response tokens for the whole run, whichever checkpoint a stage trains
  on), each checkpoint again by one forward pass over the probe rows.

Each row may carry its subdomain (`groups`), so both terms of the selection score can be read per subdomain; a
per-subdomain term is the mean over that subdomain's response tokens, so the whole-probe term is the token-weighted
average of the per-subdomain ones (rows without a subdomain count in the whole only).
"""
from __future__ import annotations

import torch

from scd.data import Encoded
from scd.tokens import by_chunks

PROBE_SOURCES = ("train", "validation", "transfer")


class ProbeSet:
    def __init__(self, rows: list[Encoded], indices: list[int], pad_id: int, vocab_size: int, batch_size: int = 64,
                 source: str = "train", groups: list | None = None):
        if source not in PROBE_SOURCES:
            raise ValueError(f"probe source must be one of {', '.join(PROBE_SOURCES)}, got {source!r}")
        self.rows, self.indices = rows, indices  # rows[k] is row indices[k] of the `source` split
        self.pad_id, self.vocab, self.batch_size = pad_id, vocab_size, batch_size
        self.source = source
        self.groups = list(groups) if groups is not None else [None] * len(rows)  # subdomain per row

    @classmethod
    def sample(cls, data: list[Encoded], size: int, seed: int, pad_id: int, vocab_size: int, source: str = "train",
               groups: list | None = None) -> "ProbeSet":
        """`size` rows drawn without replacement from `data` (the `source` split's rows), fixed by `seed`;
        `groups`: the subdomain of every row of `data` (None: no subdomains)."""
        g = torch.Generator().manual_seed(seed)
        idx = sorted(torch.randperm(len(data), generator=g)[: min(size, len(data))].tolist())
        return cls([data[i] for i in idx], idx, pad_id, vocab_size, source=source,
                   groups=[groups[i] for i in idx] if groups is not None else None)

    def with_rows(self, rows: list[Encoded]) -> "ProbeSet":
        """The same probe with its rows' responses replaced (transfer prompts labelled by T*)."""
        return ProbeSet(rows, self.indices, self.pad_id, self.vocab, self.batch_size, self.source, self.groups)

    def token_groups(self) -> list:
        """The subdomain of each response token, in the order of the probe's [tokens, vocab] matrices."""
        return [g for r, g in zip(self.rows, self.groups) for _ in r.answer_ids]

    def subdomain_tokens(self) -> dict[str, int]:
        """Response tokens per subdomain (the weights that make per-subdomain terms average to the whole)."""
        out: dict[str, int] = {}
        for g in self.token_groups():
            if g is not None:
                out[g] = out.get(g, 0) + 1
        return dict(sorted(out.items()))

    def describe(self) -> dict:
        """What the summary records about the probe."""
        return {"source": self.source, "rows": len(self.rows), "tokens": sum(len(r.answer_ids) for r in self.rows),
                "subdomain_tokens": self.subdomain_tokens(), "indices": list(self.indices)}


def token_kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) at every token, [tokens] (one chunk of [tokens, vocab] products at a time)."""
    return by_chunks(_kl_rows, logp, logq)


def mean_kl(logp: torch.Tensor, logq: torch.Tensor) -> float:
    """KL(p || q) per token, averaged over tokens; 0 for an empty probe."""
    if logp.numel() == 0:
        return 0.0
    return float(token_kl(logp, logq).mean())


def group_means(values: torch.Tensor, groups: list) -> dict[str, float]:
    """The mean of per-token `values` over each group's tokens (tokens of group None: in no group)."""
    out = {}
    for g in sorted({g for g in groups if g is not None}):
        sel = torch.tensor([x == g for x in groups])
        out[g] = float(values[sel].mean())
    return out


def _kl_rows(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    p = logp.exp()
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1)
