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
