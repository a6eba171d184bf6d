"""Adaptive KL (Wu et al. 2024, "Rethinking Kullback-Leibler Divergence in Knowledge Distillation for Large
Language Models", arXiv 2404.02657; wutaiqiang/LLM_KD_AKL).

Per token, at temperature tau, p = teacher, q = student:
- sort p descending (stable sort: ties keep vocabulary order); the HEAD is the smallest set of top tokens whose
  cumulative teacher mass reaches mu, the token that crosses mu included (token k is in the head iff the mass of
  the tokens ranked above it is < mu); the TAIL is the rest. (The reference code puts the crossing token in the tail
  unless it is the top token; we follow the "reaches mu" definition.)
- g_head = sum_head |p - q|, g_tail = sum_tail |p - q|, with p and q taken at the SAME vocabulary entries (the head
  mask is scattered back to vocabulary order, so q can not be misaligned with the sorted p);
- w_head = g_head / (g_head + g_tail), w_tail = g_tail / (g_head + g_tail), 0/0 -> 0.5 each; no gradient through
  the weights;
- AKL = w_head * KL(p || q) + w_tail * KL(q || p), true-KL forms, float32; -inf logits as in `fkl` / `rkl` (the RKL
  term reads a zero teacher probability as LOG_FLOOR = log(2**-126), so the value stays finite).
"""
from __future__ import annotations

import torch

from scd.distill.losses import kl_from_log_probs, student_teacher_log_probs
from scd.distill.parts import register_divergence
from scd.tokens import mask_tokens


def head_mask(p: torch.Tensor, mu: float) -> torch.Tensor:
    """Boolean [..., V] in vocabulary order: the teacher's top tokens whose cumulative mass first reaches mu."""
    sorted_p, idx = torch.sort(p, dim=-1, descending=True, stable=True)
    cum = torch.cumsum(sorted_p, dim=-1)
    mass_above = torch.cat([torch.zeros_like(cum[..., :1]), cum[..., :-1]], dim=-1)  # exclusive cumulative mass
    return torch.zeros_like(p, dtype=torch.bool).scatter(-1, idx, mass_above < mu)


def head_tail_weights(p: torch.Tensor, q: torch.Tensor, mu: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_head, w_tail) [...]: the shares of the p-q gap on the head and on the tail; 0.5 each if there is no gap."""
    p, q = p.detach(), q.detach()
    head = head_mask(p, mu)
    gap = (p - q).abs()
    g_head = torch.where(head, gap, torch.zeros_like(gap)).sum(-1)
    g_tail = torch.where(head, torch.zeros_like(gap), gap).sum(-1)
    total = g_head + g_tail
    has_gap = total > 0
    safe = torch.where(has_gap, total, torch.ones_like(total))
    half = torch.full_like(total, 0.5)
    return torch.where(has_gap, g_head / safe, half), torch.where(has_gap, g_tail / safe, half)


@register_divergence("akl", reference="Wu et al. 2024, Rethinking KL Divergence in KD for LLMs (Adaptive KL); "
                                      "wutaiqiang/LLM_KD_AKL")
def adaptive_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                temperature: float = 1.0, *, mu: float = 0.5) -> torch.Tensor:
    """Adaptive KL: w_head*FKL + w_tail*RKL, weights from the p-q gap on p's top-mu head vs the tail."""
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"akl: mu must be in [0, 1], got {mu}")
    logq, logp = student_teacher_log_probs(student_logits, teacher_logits, temperature)
    w_head, w_tail = head_tail_weights(logp.exp(), logq.exp(), mu)
    tok = w_head * kl_from_log_probs(logp, logq) + w_tail * kl_from_log_probs(logq, logp)
    return mask_tokens(tok, mask)
