"""Teacher schedules: which teacher checkpoint each distillation stage learns from.

A schedule sees a `StageContext` (scd/distill/context.py): the stage index and count, the teacher checkpoints in
training order with `best` (T*) last, the checkpoints chosen so far, and a probe of model distributions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from scd.distill.parts import register_schedule
from scd.distill.probe import mean_kl

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


@register_schedule("scd", reference="SCD, arXiv 2601.10114; details left open: ../shared/docs/method.md")
class ScheduledCheckpoint:
    """SCD: c_k = argmin_c KL(p_T* || p_c) + lambda * KL(p_S_k || p_c) over the checkpoints, on a probe set."""

    def __init__(self, lam: float = 1.0, monotone: bool = False, performance_kl: str = "best_to_ckpt",
                 learnability_kl: str = "student_to_ckpt"):
        if lam < 0:
            raise ValueError(f"schedule 'scd': lam must be >= 0, got {lam}")
        allowed = {"best_to_ckpt", "ckpt_to_best"}, {"student_to_ckpt", "ckpt_to_student"}
        if performance_kl not in allowed[0] or learnability_kl not in allowed[1]:
            raise ValueError(f"schedule 'scd': performance_kl in {sorted(allowed[0])}, "
                             f"learnability_kl in {sorted(allowed[1])}")
        self.lam, self.monotone = lam, monotone
        self.performance_kl, self.learnability_kl = performance_kl, learnability_kl
        self._performance: dict[str, float] | None = None  # teacher-side term: computed once, not per stage
        self.scores: list[dict[str, dict[str, float]]] = []  # per stage: checkpoint -> terms, for inspection

    def choose(self, ctx: StageContext) -> str:
        candidates = list(ctx.checkpoints)
        if self.monotone and ctx.history:
            candidates = candidates[candidates.index(ctx.history[-1]):]
        if self._performance is None:
            best = ctx.teacher_logprobs("best")
            self._performance = {
                c: (mean_kl(best, ctx.teacher_logprobs(c)) if self.performance_kl == "best_to_ckpt"
                    else mean_kl(ctx.teacher_logprobs(c), best)) for c in ctx.checkpoints}
        student = ctx.student_logprobs()
        stage_scores = {}
        for c in candidates:
            t = ctx.teacher_logprobs(c)
            learn = mean_kl(student, t) if self.learnability_kl == "student_to_ckpt" else mean_kl(t, student)
            stage_scores[c] = {"performance": self._performance[c], "learnability": learn,
                               "score": self._performance[c] + self.lam * learn}
        self.scores.append(stage_scores)
        # ties go to the earlier checkpoint (candidates are in training order)
        return min(candidates, key=lambda c: stage_scores[c]["score"])
