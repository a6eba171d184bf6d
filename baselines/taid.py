"""TAID (Shing et al., ICLR 2025; SakanaAI/TAID): KL(p_t || q) against an intermediate teacher
p_t = softmax((1 - t) * stopgrad(z_S) + t * z_T), whose t rises from t_start to t_end.

t never falls below the linear ramp t_start + (t_end - t_start) * progress and moves ahead of it by
alpha * sigmoid(m) * (1 - t), where m is a momentum (beta) of the relative decrease of the TAID loss between
steps. t, the momentum and the previous loss are buffers: saved with the run (objective.safetensors beside the
best student) and restored with `load_state_dict`. Pinned: true KL form, float32, temperature on both logits,
progress = optimizer steps so far / all steps of the run (over all stages).
"""
from __future__ import annotations

import math

import torch

from scd.distill.losses import kl_from_log_probs, log_probs
from scd.distill.parts import Objective, register_divergence
from scd.tokens import mask_tokens, masked_mean


@register_divergence("taid", reference="Shing et al., TAID, ICLR 2025; github.com/SakanaAI/TAID")
class TAID(Objective):
    """KL(p_t || q) to a teacher interpolated with the detached student, t adaptive from t_start to t_end."""

    positionwise = True  # per token: the loss may call it on the response positions only

    def __init__(self, t_start: float = 0.4, t_end: float = 1.0, alpha: float = 5e-4, beta: float = 0.99,
                 adaptive: bool = True):
        super().__init__()
        if not (0.0 <= t_start < t_end <= 1.0):
            raise ValueError(f"TAID needs 0 <= t_start < t_end <= 1, got t_start={t_start}, t_end={t_end}")
        self.t_start, self.t_end, self.alpha, self.beta, self.adaptive = t_start, t_end, alpha, beta, adaptive
        self.register_buffer("t", torch.tensor(float(t_start)))
        self.register_buffer("momentum", torch.tensor(0.0))
        self.register_buffer("prev_loss", torch.tensor(math.inf))
        self._sum, self._count = 0.0, 0  # this step's TAID loss, over micro-batches

    def forward(self, student_logits, teacher_logits, mask, temperature: float = 1.0) -> torch.Tensor:
        zs, zt = student_logits.float(), teacher_logits.detach().float()
        t = self.t.to(zs.device)
        # the interpolation is in logit space at temperature tau: softmax(((1 - t) z_S + t z_T) / tau)
        kl = mask_tokens(kl_from_log_probs(log_probs((1 - t) * zs.detach() + t * zt, temperature),
                                           log_probs(zs, temperature)), mask)
        if self.training:
            self._sum += float(masked_mean(kl.detach(), mask)) * int(mask.sum())
            self._count += int(mask.sum())
        return kl

    def after_step(self, loss: float, step: int, total_steps: int) -> None:
        value = self._sum / self._count if self._count else None
        self._sum, self._count = 0.0, 0
        if value is None or not math.isfinite(value):
            return
        if math.isinf(float(self.prev_loss)):
            self.prev_loss.fill_(value)
            return
        prev = float(self.prev_loss)
        change = (prev - value) / (prev + 1e-15)
        self.momentum.mul_(self.beta).add_((1 - self.beta) * change)
        target = self.t_start + (self.t_end - self.t_start) * min(1.0, step / max(1, total_steps))
        t = float(self.t)
        if self.adaptive:
            step_up = self.alpha * float(torch.sigmoid(self.momentum)) * (1 - t)
            t = min(self.t_end, max(target, t + step_up))
        else:
            t = target
        self.t.fill_(t)
        self.prev_loss.fill_(value)

    def log_values(self) -> dict[str, float]:
        return {"taid/t": float(self.t), "taid/momentum": float(self.momentum)}
