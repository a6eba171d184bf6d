"""Registries of the three parts of a distillation method.

- DIVERGENCES: f(student_logits, teacher_logits, mask, temperature, **options) -> per-token loss [B, T], float32,
  exactly 0 at masked positions. Pure functions: testable on tensors without a model.
- SCHEDULES: classes with `choose(ctx) -> checkpoint name`, called when a stage starts, given a
  `StageContext` (scd/distill/context.py): teacher checkpoints, the current student, a probe set.
- WEIGHTINGS: classes with `begin_stage(ctx, checkpoint)` and `weights(batch, alpha) -> tensor [B] in [0, 1]`, the
  per-sample weight of the divergence against CE (no gradient).
Schedules and weightings are built with their options as keyword arguments (`schedule_options`,
`weighting_options` in a method's config); divergences receive `options` as keyword arguments.
"""
from __future__ import annotations

from scd.registry import Registry

DIVERGENCES: Registry = Registry("divergence")
SCHEDULES: Registry = Registry("teacher schedule")
WEIGHTINGS: Registry = Registry("sample weighting")

register_divergence = DIVERGENCES.register
register_schedule = SCHEDULES.register
register_weighting = WEIGHTINGS.register

_loaded = False


def load_plugins() -> None:
    """Import every baseline module and entry-point plugin so that their registrations take effect."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil
    from importlib.metadata import entry_points

    import scd.distill.schedules  # noqa: F401  (core schedules and weightings)
    import scd.distill.weighting  # noqa: F401
    import baselines

    for mod in pkgutil.iter_modules(baselines.__path__):
        importlib.import_module(f"baselines.{mod.name}")
    for ep in entry_points(group="scd_bench.baselines"):
        ep.load()
