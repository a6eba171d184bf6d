"""The teacher's trajectory by name: the checkpoints a teacher SFT saves, the evenly spaced subset a method's
trajectory size picks, and the union the distillations of one task and seed read, which is all the teacher-output
cache needs to hold (the default profile saves 8 checkpoints and its methods read 4)."""
from __future__ import annotations


def checkpoint_names(saved: int) -> list[str]:
    """The names of a teacher SFT's `saved` checkpoints in training order: ckpt-1 .. ckpt-(saved-1), then `best`
    (T*, which stands in for the last one; scd/distill/teacher.py saved_checkpoints reads them from disk)."""
    return [f"ckpt-{k}" for k in range(1, saved)] + ["best"]


def evenly_spaced(names: list[str], n: int | None) -> list[str]:
    """`n` of the trajectory's checkpoints, evenly spaced and ending at T* (the granularity ablation keeps 8
    checkpoints on disk and uses 8, 4, 2 or 1 of them); None: all of them."""
    if n is None or n >= len(names):
        return list(names)
    if n < 1:
        raise ValueError(f"a trajectory needs at least one checkpoint, got {n}")
    return [names[round((k + 1) * len(names) / n) - 1] for k in range(n)]


def used_checkpoints(names: list[str], trajectories: list[int | None] | None) -> list[str]:
    """The checkpoints, in training order, that distillations with these trajectory sizes read (None among them,
    or no list at all: every one)."""
    if trajectories is None:
        return list(names)
    picked = {name for n in trajectories for name in evenly_spaced(names, n)}
    return [name for name in names if name in picked]


class TrajectoryError(ValueError):
    """A teacher trajectory whose checkpoints are not distinct or not in training order."""


def require_in_order(names: list[str], steps: dict[str, int], where: str) -> None:
    """Refuse a trajectory (names in the order schedules read them, `best` last) whose checkpoints' optimizer
    steps (`steps`, from `where`) do not strictly increase: two names for the same weights (T* saved at the step of
    a checkpoint) would make SCD compare a checkpoint with itself and CD train on it twice, and T* before a
    checkpoint would put the trajectory out of training order."""
    fix = ("T* (best) stands in for the last checkpoint, so read fewer checkpoints (training.distill.trajectory or "
           "the method's trajectory) or re-run the teacher SFT so that its best validation score comes after them")
    first: dict[int, str] = {}
    for name in names:
        if steps[name] in first:
            raise TrajectoryError(f"teacher trajectory {', '.join(names)} is not distinct: {name!r} is the same "
                                  f"weights as {first[steps[name]]!r} (both step {steps[name]}, per {where}); {fix}")
        first[steps[name]] = name
    for a, b in zip(names, names[1:]):
        if steps[b] < steps[a]:
            raise TrajectoryError(f"teacher trajectory {', '.join(names)} is not in training order: {b!r} (step "
                                  f"{steps[b]}) comes before {a!r} (step {steps[a]}), per {where}; {fix}")


def require_distinct(names: list[str], digests: dict[str, str]) -> None:
    """Refuse a trajectory in which two names hold the same weights (by content digest), where no steps are known."""
    seen: dict[str, str] = {}
    for name in names:
        if digests[name] in seen:
            raise TrajectoryError(f"teacher trajectory {', '.join(names)} is not distinct: {name!r} holds the same "
                                  f"weights as {seen[digests[name]]!r}; read fewer checkpoints "
                                  f"(training.distill.trajectory) or re-run the teacher SFT")
        seen[digests[name]] = name
