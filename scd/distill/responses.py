"""Response sources: the sequences a distillation loss is computed on.

A source decides, when a stage starts, the stage's training rows (`stage_rows`, given the checkpoint in use, the
training rows, the transfer rows that checkpoint labelled, the teacher cache and the live teacher), and may replace
a batch's responses at each step (`batch`, given the batch, the student and the live teacher, e.g. on-policy
samples; it says whether the new sequences need the live teacher's logits). The core source is `gold`:
teacher-forced on the gold responses (plus the transfer set's teacher outputs). Baselines add others
(baselines/seqkd.py, baselines/gkd.py, baselines/distillm.py).

A source whose choice follows the validation loss (DistiLLM's adaptive off-policy responses) also defines
`begin_run(validation, total_steps, batch_size)`: the validation split's encoded rows (gold responses), the run's
optimizer steps over all stages and the training batch size, given once before training by the distillation stage
(`needs_validation(source)` says whether it must).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from scd.data import Encoded
from scd.distill.parts import register_responses

if TYPE_CHECKING:  # annotations only: importing it would load the models' stack
    from scd.distill.teacher import LiveTeacher, TeacherCache


@register_responses("gold", reference="teacher forcing on the task's gold responses (off-policy KD)")
class GoldResponses:
    """Teacher-forced on the gold responses; transfer rows carry the checkpoint's greedy outputs."""

    live_teacher = False  # teacher logits come from the cached teacher outputs of these rows

    def stage_rows(self, checkpoint: str, train: list[Encoded], transfer: list[Encoded], cache: TeacherCache,
                   live: LiveTeacher) -> list[Encoded]:
        return train + transfer  # indices past len(train) are transfer rows

    def batch(self, batch: dict, model, live: LiveTeacher) -> tuple[dict, bool]:
        """The batch to compute the loss on, and whether its teacher logits need a live teacher forward."""
        return batch, False


def needs_validation(source) -> bool:
    """Whether a response source must be given the validation split and the run's length (`begin_run`) before
    training."""
    return callable(getattr(source, "begin_run", None))
