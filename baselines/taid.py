"""TAID (Shing et al., ICLR 2025; SakanaAI/TAID): KL(p_t || q) against an intermediate teacher
p_t = softmax((1 - t) * stopgrad(z_S) + t * z_T), whose t rises from t_start to t_end.

After every optimizer step t moves ahead of the linear ramp t_start + (t_end - t_start) * progress by
alpha * sigmoid(m) * (1 - t) and never falls below it, where m is a momentum (beta) of the relative decrease of the
TAID loss between steps: t <- min(t_end, max(ramp, t + alpha * sigmoid(m) * (1 - t))). As in the reference
(SakanaAI/TAID, src/distil_losses/taid.py `update_t`):
- the loss the update reads is the reference's cross-entropy form, -sum_v p_t log q (its `distil_loss`, the value
  it returns to the trainer), the token mean of the step; not the true KL the suite trains on and logs (convention
  1 of baselines/CONVENTIONS.md: same gradient, but the two differ by the entropy of p_t, which changes with t, so
  their relative decrease between steps differs);
- progress = optimizer steps done before this one / all steps of the run (the reference reads Lightning's
  `global_step` during the step); the first step only records its loss.
Not copied: the reference also runs `update_t` on validation batches (its loss module is called there too); here
t moves on training steps only. Under gradient accumulation the reference updates once per micro-batch, here once
per optimizer step with the step's token mean (the same without accumulation, as its scripts run).
t, the momentum and the previous loss are buffers: saved with the run (objective.safetensors beside the best
student) and restored with `load_state_dict`. Pinned: true KL as the trained value, float32, temperature on both
logits (the reference has none: tau 1), progress over all stages of the run.
"""
from __future__ import annotations

import math

import torch

from scd.distill.losses import LOG_FLOOR, kl_from_log_probs, log_probs
from scd.distill.parts import Objective, register_divergence, register_method
from scd.tokens import mask_tokens


def cross_entropy_form(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """-sum_v p log q over the last axis (the reference's loss value), NaN-free as `kl_from_log_probs`: p = 0
    entries contribute 0, a -inf log q where p > 0 counts as LOG_FLOOR."""
    lq = torch.where(torch.isneginf(logq), torch.full_like(logq, LOG_FLOOR), logq)
    return -(logp.exp() * lq).sum(-1)


REFERENCE = "Shing et al., TAID, ICLR 2025; github.com/SakanaAI/TAID"


@register_divergence("taid", reference=REFERENCE)
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
        self._sum, self._count = 0.0, 0  # this step's TAID loss (cross-entropy form), over micro-batches

    def forward(self, student_logits, teacher_logits, mask, temperature: float = 1.0) -> torch.Tensor:
        zs, zt = student_logits.float(), teacher_logits.detach().float()
        t = self.t.to(zs.device)
        # the interpolation is in logit space at temperature tau: softmax(((1 - t) z_S + t z_T) / tau)
        logpt, logq = log_probs((1 - t) * zs.detach() + t * zt, temperature), log_probs(zs, temperature)
        kl = mask_tokens(kl_from_log_probs(logpt, logq), mask)
        if self.training:  # what the update reads: the reference's loss value, the cross-entropy form
            ce = mask_tokens(cross_entropy_form(logpt, logq.detach()), mask)
            self._sum += float(ce.sum())
            self._count += int(mask.sum())
        return kl

    def after_step(self, loss: float, step: int, total_steps: int) -> None:
        """`step`: optimizer steps done, this one included (1 after the first); `loss` (the step's total loss,
        CE mix included) is not what the update reads: it reads the TAID term's own value, gathered by forward."""
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
        progress = min(1.0, (step - 1) / max(1, total_steps))  # steps before this one, as the reference's
        target = self.t_start + (self.t_end - self.t_start) * progress
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


# The suite's common preset: TD's CE mix (alpha 0.5) and temperature. The reference's (train.py with
# scripts/phi-3/taid.sh): pure distillation (`--distil_ratio` 1.0, its default: no CE term), no temperature, t from
# 0.4 to 1 with alpha 5e-4, beta 0.99, adaptive.
register_method("taid", reference=REFERENCE, display="TAID", divergence="taid")
register_method("taid_ref", reference=REFERENCE + " (train.py, scripts/phi-3/taid.sh)", protocol="reference",
                display="TAID (reference settings)", divergence="taid", alpha=1.0, temperature=1.0,
                options={"t_start": 0.4, "t_end": 1.0, "alpha": 5e-4, "beta": 0.99, "adaptive": True})
