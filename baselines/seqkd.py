"""Sequence-level KD (Kim & Rush, EMNLP 2016): CE on the teacher's greedy responses instead of the gold ones.

The teacher checkpoint's greedy answers to the training prompts are generated once per teacher (T*'s in the
`teacher-outputs` job, other checkpoints' on first use) and replace the gold answers; transfer rows keep their
teacher outputs and are trained by CE too. No divergence: the teacher's logits are not used.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from scd.data import Encoded
from scd.distill.parts import register_method, register_responses

if TYPE_CHECKING:  # annotations only: importing it would load the models' stack
    from scd.distill.teacher import LiveTeacher, TeacherCache

REFERENCE = "Kim & Rush, Sequence-Level Knowledge Distillation, EMNLP 2016"


@register_responses("teacher", reference=REFERENCE)
class TeacherResponses:
    """The teacher checkpoint's greedy responses, as CE targets, for every training and transfer prompt."""

    live_teacher = False

    def __init__(self):
        self._generated: dict[str, list[list[int]]] = {}  # per checkpoint, generated once per run

    def responses(self, checkpoint: str, train: list[Encoded], cache: TeacherCache,
                  live: LiveTeacher) -> list[list[int]]:
        """The checkpoint's greedy answers to the training prompts: from the cache (T*'s), else generated now."""
        if checkpoint not in self._generated:
            cached = cache.generated(checkpoint)
            self._generated[checkpoint] = cached if cached is not None else live.generate(checkpoint, train)
        return self._generated[checkpoint]

    def stage_rows(self, checkpoint: str, train: list[Encoded], transfer: list[Encoded], cache: TeacherCache,
                   live: LiveTeacher) -> list[Encoded]:
        generated = self.responses(checkpoint, train, cache, live)
        return ([Encoded(r.prompt_ids, g) for r, g in zip(train, generated)]
                + [Encoded(r.prompt_ids, r.answer_ids) for r in transfer])

    def batch(self, batch: dict, model, live: LiveTeacher) -> tuple[dict, bool]:
        return batch, False


register_method("seqkd", reference=REFERENCE, responses="teacher", divergence="none", alpha=0.0)
