"""Token-level reductions shared by training, evaluation and distillation. All in float32; masked positions
contribute exactly zero.

Labels are pre-shifted (see scd/data.py): logits[:, t] are scored against labels[:, t]; IGNORE marks no target.
Reduction convention: a batch loss is the sum over valid tokens divided by the number of valid tokens (so each
response token counts once, whatever the sample lengths); an all-masked batch gives 0, not 0/0.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from scd.data import IGNORE


def response_mask(labels: torch.Tensor) -> torch.Tensor:
    return labels != IGNORE



def response_columns(labels: torch.Tensor) -> torch.Tensor:
    """The sequence positions where any row of the batch has a response label, in order."""
    return response_mask(labels).any(0).nonzero().squeeze(-1)


CHUNK_TOKENS = 512  # response tokens per chunk: [512, 49152] float32 is 100 MB per full-vocabulary intermediate


def by_chunks(fn: Callable[..., torch.Tensor], *rows: torch.Tensor, chunk_tokens: int | None = CHUNK_TOKENS
              ) -> torch.Tensor:
    """fn(*rows) -> [N] evaluated on `chunk_tokens` rows at a time and concatenated; None: all at once.

    A divergence over a 49k vocabulary makes several [N, V] float32 intermediates (softmaxes, logs, products),
    and autograd would keep every chunk's until the backward pass. Each chunk therefore runs under activation
    checkpointing: only its inputs are kept, and its intermediates are rebuilt one chunk at a time in the backward
    pass. At most one chunk of full-vocabulary probabilities exists at once, for one more evaluation of the
    (cheap, model-free) fn per chunk. fn must be row-wise: row i of the result depends on row i of the inputs
    only. The rows may be indices into logits that fn reads from its closure (see `at_positions`): then not even
    the logits are copied."""
    if chunk_tokens is not None and (not isinstance(chunk_tokens, int) or chunk_tokens < 1):
        raise ValueError(f"chunk_tokens must be a positive integer (or null: no chunking), got {chunk_tokens!r}")
    n = rows[0].shape[0]
    if chunk_tokens is None or n <= chunk_tokens:  # one chunk: nothing to gain from recomputation
        return fn(*rows)
    parts = []
    for i in range(0, n, chunk_tokens):
        piece = [r[i:i + chunk_tokens] for r in rows]
        parts.append(checkpoint(fn, *piece, use_reentrant=False) if torch.is_grad_enabled() else fn(*piece))
    return torch.cat(parts)


def at_positions(fn: Callable[..., torch.Tensor], mask: torch.Tensor, *tensors: torch.Tensor,
                 chunk_tokens: int | None = CHUNK_TOKENS) -> torch.Tensor:
    """[B, T] with fn(*rows) at the mask's positions and exactly 0 elsewhere, where rows are the tensors' entries
    [n, ...] at those positions, picked chunk by chunk (by_chunks): the [N, V] response logits are never copied
    out whole. fn(*rows) -> [n] or [n, k] (then the result is [B, T, k])."""
    b, t = mask.nonzero(as_tuple=True)

    def picked(bi: torch.Tensor, ti: torch.Tensor) -> torch.Tensor:
        return fn(*(x[bi, ti] for x in tensors))

    values = by_chunks(picked, b, t, chunk_tokens=chunk_tokens)
    return values.new_zeros(mask.shape + values.shape[1:]).index_put((b, t), values)


def nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target] per row: logits [N, V], targets [N] -> [N], float32."""
    return -F.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def token_ce(logits: torch.Tensor, labels: torch.Tensor, chunk_tokens: int | None = CHUNK_TOKENS) -> torch.Tensor:
    """Per-token cross-entropy [B, T] of the gold labels, 0 where masked. Computed at the response positions only
    (a prompt-heavy batch, PubMedQA: ~2 response tokens of 128, would otherwise softmax every position), in chunks
    of `chunk_tokens` positions (see by_chunks)."""
    return at_positions(nll, response_mask(labels), logits, labels, chunk_tokens=chunk_tokens)


def masked_mean(tok_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Global token mean over valid positions; 0 for an empty mask."""
    return (tok_loss * mask).sum() / mask.sum().clamp(min=1)


def per_sample_mean(tok_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each sample's valid tokens [B]; 0 for a sample without any."""
    return (tok_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def mask_tokens(tok: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """tok [B, T] with exactly 0 where mask is False (also when tok is not finite there)."""
    return torch.where(mask, tok, torch.zeros_like(tok))
