"""Teacher schedules: which teacher checkpoint each distillation stage learns from."""
from __future__ import annotations

from scd.distill.parts import register_schedule


@register_schedule("best")
class BestTeacher:
    """TD: every stage distils from the best teacher checkpoint (best validation score)."""

    def __init__(self, **options):
        if options:
            raise ValueError(f"schedule 'best' takes no options, got {sorted(options)}")

    def choose(self, stage: int, checkpoints: list[str], **context) -> str:
        return "best"
