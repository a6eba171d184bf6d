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
from scd.evaluate import generate_ids

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


def student_samples(model, prompts: list[list[int]], tokenizer, max_new_tokens: int,
                    temperature: float) -> list[list[int]]:
    """The student's samples for on-policy sources (GKD, DistiLLM) at `temperature` (no top-k, no top-p), EOS kept:
    it is a target too. One batched pass over the student's KV cache (scd.evaluate.generate_ids: the tokens
    transformers' `generate` draws from the same random state, without its per-call overhead), in eval mode, the
    model's training mode restored after."""
    was_training = model.training
    model.eval()
    samples = generate_ids(model, prompts, tokenizer.pad_token_id, tokenizer.eos_token_id, max_new_tokens,
                           next(model.parameters()).device, do_sample=True, temperature=temperature)
    model.train(was_training)
    return samples
