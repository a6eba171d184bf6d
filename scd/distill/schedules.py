"""Teacher schedules: which teacher checkpoint each distillation stage learns from.

A schedule sees a `StageContext` (scd/distill/context.py): the stage index and count, the teacher checkpoints in
training order with `best` (T*) last, the checkpoints chosen so far, and a probe of model distributions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from scd.distill.parts import register_schedule
from scd.distill.probe import PROBE_SOURCES, group_means, token_kl

if TYPE_CHECKING:  # annotations only: importing it would load the models' stack
    from scd.distill.context import StageContext


def _no_options(name: str, options: dict) -> None:
    if options:
        raise ValueError(f"schedule {name!r} takes no options, got {sorted(options)}")


@register_schedule("best", reference="TD: distillation from the final (best) teacher, Hinton et al. 2015")
class BestTeacher:
    """TD: every stage distils from the best teacher checkpoint (best validation score)."""

    def __init__(self, **options):
        _no_options("best", options)

    def choose(self, ctx: StageContext) -> str:
        return "best"


@register_schedule("fixed_order", reference="CD: route constrained optimization, Jin et al., ICCV 2019")
class FixedOrder:
    """CD: stage k distils from the k-th checkpoint, in training order, ending at T* (RCO, Jin et al. 2019)."""

    def __init__(self, **options):
        _no_options("fixed_order", options)

    def choose(self, ctx: StageContext) -> str:
        trajectory = ctx.checkpoints  # ends with T*, which stands in for the last checkpoint
        # With as many stages as checkpoints this is checkpoint k at stage k; otherwise spread evenly, ending last.
        k = round((ctx.stage + 1) * len(trajectory) / ctx.n_stages) - 1
        return trajectory[max(0, min(k, len(trajectory) - 1))]


@register_schedule("fixed", reference="oracle row: one fixed checkpoint for every stage (a ceiling for any fixed "
                                     "checkpoint schedule); this suite")
class FixedCheckpoint:
    """Every stage distils from the k-th checkpoint of the trajectory (1-based, training order; k = N is T*).
    Run once per k, these rows bound what any schedule that keeps one checkpoint can reach on a task.

    Options: checkpoint: k, an integer from 1 to the trajectory's size N (required)."""

    def __init__(self, checkpoint: int | None = None):
        if isinstance(checkpoint, bool) or not isinstance(checkpoint, int) or checkpoint < 1:
            raise ValueError(f"schedule 'fixed': schedule_options.checkpoint must be an integer >= 1 (the k-th "
                             f"checkpoint of the trajectory, 1-based; N is T*), got {checkpoint!r}")
        self.checkpoint = checkpoint

    def choose(self, ctx: StageContext) -> str:
        trajectory = ctx.checkpoints
        if self.checkpoint > len(trajectory):
            raise ValueError(f"schedule 'fixed': checkpoint {self.checkpoint} is past the trajectory's "
                             f"{len(trajectory)} checkpoints ({', '.join(trajectory)}); set "
                             f"schedule_options.checkpoint to 1..{len(trajectory)} or a larger trajectory")
        return trajectory[self.checkpoint - 1]


@register_schedule("reversed_order", reference="CD reversed: T* first, then backwards along the trajectory "
                                                 "(a control for CD's order); this suite")
class ReversedOrder:
    """CD reversed: stage k distils from the checkpoint CD uses at stage N + 1 - k, so T* comes first and the
    earliest checkpoint last; a control that tells whether CD's easy-to-hard order matters."""

    def __init__(self, **options):
        _no_options("reversed_order", options)

    def choose(self, ctx: StageContext) -> str:
        trajectory = ctx.checkpoints
        k = round((ctx.n_stages - ctx.stage) * len(trajectory) / ctx.n_stages) - 1
        return trajectory[max(0, min(k, len(trajectory) - 1))]


@register_schedule("scd", reference="SCD, arXiv 2601.10114; details left open: ../shared/docs/method.md")
class ScheduledCheckpoint:
    """SCD: c_k = argmin_c KL(p_T* || p_c) + lambda * KL(p_S_k || p_c) over the checkpoints, on a probe set.

    The performance term P(c) = KL(p_T* || p_c) prefers checkpoints close to the best teacher, the learnability
    term L(c) = KL(p_S_k || p_c) those close to the current student S_k; token-level KLs averaged over the probe's
    response tokens.

    Options (the paper leaves each open; defaults are the paper's formula as written):
    - lam: the weight lambda of the learnability term (1).
    - monotone: the choice may not go back to a checkpoint earlier than the last stage's (false: free choice).
    - performance_kl: best_to_ckpt = KL(p_T* || p_c) (default) | ckpt_to_best = KL(p_c || p_T*).
    - learnability_kl: student_to_ckpt = KL(p_S || p_c) (default, as written) | ckpt_to_student = KL(p_c || p_S),
      the direction of the forward KL(p_c || q_S) the student trains on (divergence `fkl`).
    - probe_source: train (default) | validation | transfer: where the probe rows come from, and so which responses
      the terms compare on (gold responses of training or validation rows; T*'s greedy responses to transfer
      prompts); see scd/distill/probe.py.
    - scale: raw (default): the terms as they are, summed | normalized: each term min-max scaled over the stage's
      candidate checkpoints, t~(c) = (t(c) - min_c' t(c)) / (max_c' t(c) - min_c' t(c)) (0 when all are equal),
      score = P~(c) + lambda * L~(c), so neither term dominates by its units.
    `scores` records, per stage and candidate, both raw terms, the score, the normalized terms (scale normalized)
    and both terms per subdomain of the probe rows (when the rows carry one).
    """

    def __init__(self, lam: float = 1.0, monotone: bool = False, performance_kl: str = "best_to_ckpt",
                 learnability_kl: str = "student_to_ckpt", probe_source: str = "train", scale: str = "raw"):
        if lam < 0:
            raise ValueError(f"schedule 'scd': lam must be >= 0, got {lam}")
        allowed = {"best_to_ckpt", "ckpt_to_best"}, {"student_to_ckpt", "ckpt_to_student"}
        if performance_kl not in allowed[0] or learnability_kl not in allowed[1]:
            raise ValueError(f"schedule 'scd': performance_kl in {sorted(allowed[0])}, "
                             f"learnability_kl in {sorted(allowed[1])}")
        if probe_source not in PROBE_SOURCES:
            raise ValueError(f"schedule 'scd': probe_source must be one of {', '.join(PROBE_SOURCES)}, "
                             f"got {probe_source!r}")
        if scale not in SCALES:
            raise ValueError(f"schedule 'scd': scale must be one of {', '.join(SCALES)}, got {scale!r}")
        self.lam, self.monotone = lam, monotone
        self.performance_kl, self.learnability_kl = performance_kl, learnability_kl
        self.probe_source, self.scale = probe_source, scale
        self._performance: dict[str, torch.Tensor] | None = None  # teacher-side term: computed once, not per stage
        self.scores: list[dict[str, dict]] = []  # per stage: checkpoint -> terms, for inspection

    def choose(self, ctx: StageContext) -> str:
        candidates = list(ctx.checkpoints)
        if self.monotone and ctx.history:
            candidates = candidates[candidates.index(ctx.history[-1]):]
        probe = getattr(ctx, "probe", None)
        groups = probe.token_groups() if probe is not None else None
        if self._performance is None:
            best = ctx.teacher_logprobs("best")
            self._performance = {
                c: (token_kl(best, ctx.teacher_logprobs(c)) if self.performance_kl == "best_to_ckpt"
                    else token_kl(ctx.teacher_logprobs(c), best)) for c in ctx.checkpoints}
        student = ctx.student_logprobs()
        per_token = {}
        for c in candidates:
            t = ctx.teacher_logprobs(c)
            per_token[c] = (self._performance[c], token_kl(student, t) if self.learnability_kl == "student_to_ckpt"
                            else token_kl(t, student))
        stage_scores = {c: {"performance": _mean(p), "learnability": _mean(q)} for c, (p, q) in per_token.items()}
        if self.scale == "normalized":
            for term in ("performance", "learnability"):
                scaled = min_max({c: s[term] for c, s in stage_scores.items()})
                for c in candidates:
                    stage_scores[c][f"{term}_normalized"] = scaled[c]
            suffix = "_normalized"
        else:
            suffix = ""
        for c, s in stage_scores.items():
            s["score"] = s[f"performance{suffix}"] + self.lam * s[f"learnability{suffix}"]
            if groups is not None and any(g is not None for g in groups):
                p, q = per_token[c]
                perf, learn = group_means(p, groups), group_means(q, groups)
                s["subdomains"] = {g: {"performance": perf[g], "learnability": learn[g]} for g in perf}
        self.scores.append(stage_scores)
        # ties go to the earlier checkpoint (candidates are in training order)
        return min(candidates, key=lambda c: stage_scores[c]["score"])


SCALES = ("raw", "normalized")


def min_max(values: dict[str, float]) -> dict[str, float]:
    """Each value as (v - min) / (max - min) over all of them; all 0 when they are equal."""
    lo, hi = min(values.values()), max(values.values())
    return {k: (v - lo) / (hi - lo) if hi > lo else 0.0 for k, v in values.items()}


def _mean(values: torch.Tensor) -> float:
    return float(values.mean()) if values.numel() else 0.0
