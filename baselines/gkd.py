"""On-policy GKD (Agarwal et al., ICLR 2024): with probability lmbda a batch's responses are sampled from the
student (at `sampling_temperature`, up to the task's max_new_tokens) and the teacher checkpoint in use scores them
live; otherwise the gold responses are used. The divergence is the generalized JSD (baselines/jsd.py) with beta 0.5,
on the same tensors as TRL's `GKDTrainer.generalized_jsd_loss` (tests/test_divergences.py checks the two agree).

What the loss mixes depends on the preset:
- `gkd`, the suite's common preset: alpha 0.5, so a gold batch trains on 0.5 JSD + 0.5 CE (the gold labels'
  cross-entropy), while a student-sampled batch trains on JSD alone (no gold label: w = 1, Method.loss); students
  sample at temperature 1.
- `gkd_ref`, as TRL's GKDTrainer (the reference code) runs it: pure JSD on every batch (alpha 1, no CE term; TRL's
  `compute_loss` returns the JSD alone), the loss at temperature 1, students sampling at TRL's default temperature
  0.9 (no top-k, no top-p), lmbda 0.5, beta 0.5. Kept from the suite: the task's max_new_tokens (TRL: 128), the
  token normalisation over the step (TRL: the same under its `num_items_in_batch`).

Our own loop rather than TRL's trainer: TRL's trainers own the optimizer, the data and the teacher model, while
here the teacher is a schedule of checkpoints with cached outputs and the student trains in stages; the pieces TRL
would supply (sampling, the JSD) are each a few lines and are tested against TRL's.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch

from scd.data import Encoded, collate
from scd.distill.parts import register_method, register_responses
from scd.distill.responses import student_samples

if TYPE_CHECKING:  # annotations only: importing it would load the models' stack
    from scd.distill.teacher import LiveTeacher, TeacherCache

REFERENCE = "Agarwal et al., On-Policy Distillation of Language Models (GKD), ICLR 2024; TRL GKDTrainer"


@register_responses("on_policy", reference=REFERENCE)
class OnPolicy:
    """With probability lmbda per batch, student-sampled responses (scored by the live teacher); else gold."""

    live_teacher = True

    def __init__(self, lmbda: float = 0.5, sampling_temperature: float = 1.0):
        if not 0.0 <= lmbda <= 1.0:
            raise ValueError(f"on_policy: lmbda must be in [0, 1], got {lmbda}")
        self.lmbda, self.temperature = lmbda, sampling_temperature
        self._coin: random.Random | None = None
        self._rows: list[Encoded] = []

    def stage_rows(self, checkpoint: str, train: list[Encoded], transfer: list[Encoded], cache: TeacherCache,
                   live: LiveTeacher) -> list[Encoded]:
        if self._coin is None:  # its own stream, from the run's seed: the data order does not depend on it
            self._coin = random.Random(torch.initial_seed())
        self._rows = train + transfer
        return self._rows

    def sample(self, model, prompts: list[list[int]], tokenizer, max_new_tokens: int) -> list[list[int]]:
        """Student samples at `sampling_temperature` (scd.distill.responses.student_samples)."""
        return student_samples(model, prompts, tokenizer, max_new_tokens, self.temperature)

    def batch(self, batch: dict, model, live: LiveTeacher) -> tuple[dict, bool]:
        """Student samples up to the live teacher's max_new_tokens, in its (the shared) tokenizer."""
        if self._coin.random() >= self.lmbda:
            return batch, False
        index = batch["index"].tolist()
        prompts = [self._rows[i].prompt_ids for i in index]
        tokenizer = live.tokenizer
        samples = self.sample(model, prompts, tokenizer, live.max_new_tokens)
        device = batch["input_ids"].device
        rows = [Encoded(p, s or [tokenizer.eos_token_id], labelled=False) for p, s in zip(prompts, samples)]
        new = {k: v.to(device) for k, v in collate(rows, tokenizer.pad_token_id).items()}
        new["index"] = batch["index"]
        return new, True


register_method("gkd", reference=REFERENCE, display="GKD (on-policy JSD)", responses="on_policy",
                divergence="jsd", options={"beta": 0.5})
register_method("gkd_ref", reference=REFERENCE + " (GKDConfig defaults, compute_loss)", protocol="reference",
                display="GKD (reference settings)", responses="on_policy",
                responses_options={"lmbda": 0.5, "sampling_temperature": 0.9}, divergence="jsd",
                options={"beta": 0.5}, alpha=1.0, temperature=1.0)
