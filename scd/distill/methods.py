"""A distillation method = schedule x divergence x weighting, plus the loss that combines them."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from scd.distill.losses import response_mask, token_ce
from scd.distill.parts import DIVERGENCES, SCHEDULES, WEIGHTINGS, load_plugins

RESERVED = {"teacher_sft", "student_sft"}  # leaderboard rows that are not distillation methods


@dataclass
class Method:
    name: str
    schedule: object
    divergence: callable
    weighting: object
    alpha: float = 0.5
    temperature: float = 1.0
    tau_squared: bool = False
    options: dict = field(default_factory=dict)

    def loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
             weights: torch.Tensor, labelled: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """sum_i,t mask * (w_i * D_it + (1 - w_i) * CE_it) / #valid tokens, in float32.

        Rows with labelled = False (transfer set: the target is a teacher output, not a gold label) take the
        divergence alone, w_i = 1: there is no gold CE to mix in."""
        mask = response_mask(labels)
        teacher_logits = teacher_logits.detach()  # the teacher is a target: no gradient, whatever the caller did
        div = self.divergence(student_logits.float(), teacher_logits.float(), mask, self.temperature, **self.options)
        if self.tau_squared:
            div = div * self.temperature ** 2
        ce = token_ce(student_logits, labels)
        w = weights.detach().float().to(div.device)
        if labelled is not None:
            w = torch.where(labelled.to(div.device), w, torch.ones_like(w))
        w = w.unsqueeze(-1)
        n = mask.sum().clamp(min=1)
        loss = ((w * div + (1 - w) * ce) * mask).sum() / n
        # the mean weight of labelled rows: transfer rows are 1 by construction, not by the weighting's choice
        given = weights.detach().float()[labelled.cpu()] if labelled is not None else weights.detach().float()
        stats = {"divergence": float((div.detach() * mask).sum() / n), "ce": float((ce.detach() * mask).sum() / n),
                 "weight_mean": float(given.mean()) if given.numel() else 0.0}
        return loss, stats


def _build(cls, options: dict, what: str):
    try:
        return cls(**options)
    except TypeError as e:  # an unknown keyword: say which part and which options exist
        import inspect

        known = [p for p in inspect.signature(cls).parameters if p != "options"]
        raise ValueError(f"{what} {cls.__name__}: {e}; its options: {', '.join(known) or '(none)'}") from None


def method_from_config(name: str, spec: dict) -> Method:
    load_plugins()
    if name in RESERVED:
        raise ValueError(f"{name!r} names a leaderboard row of its own; pick another method name")
    return Method(
        name=name,
        schedule=_build(SCHEDULES.get(spec["schedule"]), spec.get("schedule_options", {}), "schedule"),
        divergence=DIVERGENCES.get(spec["divergence"]),
        weighting=_build(WEIGHTINGS.get(spec["weighting"]), spec.get("weighting_options", {}), "weighting"),
        alpha=spec.get("alpha", 0.5),
        temperature=spec.get("temperature", 1.0),
        tau_squared=spec.get("tau_squared", False),
        options=spec.get("options", {}),
    )
