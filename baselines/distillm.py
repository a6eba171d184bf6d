"""DistiLLM (Ko et al., ICML 2024; jongwooko/distillm): the skew KL (baselines/skew_kl.py) trained with DistiLLM's
adaptive off-policy responses, the response source `adaptive_off_policy` below.

Per batch, with r uniform in [0, 1) and the run's progress (rows seen / rows of the run, the reference's
global_step / total_iters), as the reference's `finetune.py` does:
- r < s, with s = threshold * (1 - progress) (`replay_ratio` decreasing; constant: threshold / 2; increasing:
  threshold * progress), or r < threshold while the replay buffer is not full: the student generates responses to
  the batch's prompts (sampling at `sampling_temperature`, no top-k, no top-p, up to the task's max_new_tokens);
  they join the replay buffer (the last `capacity` samples) and the batch trains on them;
- else r < threshold: the batch is as many samples drawn from the replay buffer (without replacement);
- else: the gold batch.
Student-generated rows carry no gold label: they train on the divergence alone (w = 1, Method.loss), scored by the
live teacher checkpoint. The threshold starts at `init_threshold` (0: all gold at first) and adapts to the
validation loss, measured before training and at the end of every epoch (the reference's eval interval, an epoch):
when it is at least `loss_eps` above the last loss that raised it (the first one, at first), the threshold grows
by `threshold_step` (0.1), up to 1.

Presets: `distillm` (the suite's common protocol: CE mix alpha 0.5 on gold batches) and `distillm_ref` (as the
reference's scripts/gpt2/distillm/*.sh run it: `--type adaptive-sfkl --kd-ratio 1.0`, pure skew KL with skew 0.1,
init threshold 0, loss_eps 0.1, capacity 1000, replay ratio decreasing, sampling at temperature 1). Not
reproduced: the reference adds a language-modelling loss on OpenWebText (`--lm-data-dir`, the gpt2 scripts); the
validation loss is the token mean of the student's gold cross-entropy over the validation split (the reference:
the mean of per-batch means); generation stops at the task's max_new_tokens (the reference: max_length 512 minus
the prompt).

The source needs the validation split and the run's length, which the distillation stage gives it with
`begin_run(validation, total_steps, batch_size)` before training (scd.distill.responses.needs_validation); a run
that was not given them stops at its first batch.
"""
from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING

import torch

from scd.data import Encoded, collate
from scd.distill.parts import register_method, register_responses
from scd.distill.responses import student_samples
from scd.models import forward_responses
from scd.tokens import response_mask, token_ce

if TYPE_CHECKING:  # annotations only: importing it would load the models' stack
    from scd.distill.teacher import LiveTeacher, TeacherCache

REFERENCE = "Ko et al. 2024, DistiLLM: Towards Streamlined Distillation for LLMs (ICML); jongwooko/distillm"
REPLAY_RATIOS = ("decreasing", "constant", "increasing")


@torch.no_grad()
def validation_loss(model, rows: list[Encoded], pad_id: int, batch_size: int, device) -> float:
    """The student's gold cross-entropy on `rows`, the token mean over their response tokens (EOS included)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = {k: v.to(device) for k, v in collate(rows[start: start + batch_size], pad_id).items()}
        out, labels = forward_responses(model, batch)
        total += float(token_ce(out.logits, labels).sum())
        count += int(response_mask(labels).sum())
    model.train(was_training)
    return total / max(count, 1)


class AdaptiveOffPolicy:
    """DistiLLM's responses: student samples with a probability that grows as the validation loss rises, replayed
    from a buffer; else gold."""

    live_teacher = True

    def __init__(self, init_threshold: float = 0.0, loss_eps: float = 0.1, threshold_step: float = 0.1,
                 capacity: int = 1000, replay_ratio: str = "decreasing", sampling_temperature: float = 1.0):
        for key, value in (("init_threshold", init_threshold), ("threshold_step", threshold_step)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"adaptive_off_policy: {key} must be in [0, 1], got {value}")
        if capacity < 1:
            raise ValueError(f"adaptive_off_policy: capacity must be at least 1 sample, got {capacity}")
        if replay_ratio not in REPLAY_RATIOS:
            raise ValueError(f"adaptive_off_policy: replay_ratio must be one of {', '.join(REPLAY_RATIOS)}, "
                             f"got {replay_ratio!r}")
        if not sampling_temperature > 0:
            raise ValueError(f"adaptive_off_policy: sampling_temperature must be > 0, got {sampling_temperature}")
        self.threshold, self.loss_eps, self.threshold_step = float(init_threshold), loss_eps, threshold_step
        self.capacity, self.replay_ratio, self.temperature = capacity, replay_ratio, sampling_temperature
        self.buffer: deque[tuple[list[int], list[int]]] = deque(maxlen=capacity)
        self.prev_loss: float | None = None       # the validation loss the threshold last moved on
        self.val_losses: list[float] = []         # every validation loss measured, in order
        self.counts = {"gold": 0, "generated": 0, "replayed": 0}  # batches of each kind
        self._coin: random.Random | None = None
        self._validation: list[Encoded] | None = None
        self._run_rows, self._batch_size = 0, 1
        self._rows: list[Encoded] = []
        self._seen, self._epoch_rows, self._due = 0, 0, True

    def begin_run(self, validation: list[Encoded], total_steps: int, batch_size: int) -> None:
        """Before training: the validation split (gold responses) and the run's optimizer steps over all stages."""
        if not validation:
            raise ValueError("adaptive_off_policy (DistiLLM): the task's validation split is empty; the adaptive "
                             "threshold follows the validation loss: give the task validation rows")
        self._validation, self._batch_size = validation, max(1, batch_size)
        self._run_rows = max(1, total_steps) * self._batch_size

    def stage_rows(self, checkpoint: str, train: list[Encoded], transfer: list[Encoded], cache: TeacherCache,
                   live: LiveTeacher) -> list[Encoded]:
        if self._coin is None:  # its own stream, from the run's seed: the data order does not depend on it
            self._coin = random.Random(torch.initial_seed())
        self._rows = train + transfer
        # an epoch ends where a stage ends: the next stage's first batch measures the validation loss first (the
        # first stage's: before training, as the reference does)
        self._epoch_rows, self._due = 0, True
        return self._rows

    def observe(self, loss: float) -> None:
        """The reference's threshold rule, given a validation loss."""
        self.val_losses.append(loss)
        if self.prev_loss is None:
            self.prev_loss = loss
        elif loss >= self.prev_loss + self.loss_eps:
            self.threshold = min(1.0, self.threshold + self.threshold_step)
            self.prev_loss = loss

    def sampling_threshold(self) -> float:
        """Below it a batch is generated fresh (above it and below the threshold: replayed)."""
        progress = min(1.0, self._seen / self._run_rows)
        if self.replay_ratio == "constant":
            return self.threshold * 0.5
        if self.replay_ratio == "increasing":
            return self.threshold * progress
        return self.threshold * (1.0 - progress)

    def batch(self, batch: dict, model, live: LiveTeacher) -> tuple[dict, bool]:
        if self._validation is None:
            raise ValueError("adaptive_off_policy (DistiLLM) got no validation split before training: the "
                             "distillation stage must call its begin_run(validation rows, total steps, batch size); "
                             "run the loss alone instead with the `skew_kl` method")
        device, n = batch["input_ids"].device, int(batch["index"].numel())
        tokenizer = live.tokenizer
        if self._epoch_rows >= len(self._rows):  # the previous batch ended an epoch
            self._epoch_rows, self._due = 0, True
        if self._due:
            self.observe(validation_loss(model, self._validation, tokenizer.pad_token_id, self._batch_size, device))
            self._due = False
        fresh = self.sampling_threshold()
        self._seen += n
        self._epoch_rows += n
        r = self._coin.random()
        if r < fresh or (r < self.threshold and len(self.buffer) < self.capacity):
            prompts = [self._rows[i].prompt_ids for i in batch["index"].tolist()]
            samples = self.sample(model, prompts, tokenizer, live.max_new_tokens)
            pairs = [(p, s or [tokenizer.eos_token_id]) for p, s in zip(prompts, samples)]
            self.buffer.extend(pairs)
            self.counts["generated"] += 1
        elif r < self.threshold:
            pairs = self._coin.sample(list(self.buffer), min(n, len(self.buffer)))
            self.counts["replayed"] += 1
        else:
            self.counts["gold"] += 1
            return batch, False
        rows = [Encoded(p, s, labelled=False) for p, s in pairs]
        new = {k: v.to(device) for k, v in collate(rows, tokenizer.pad_token_id).items()}
        new["index"] = batch["index"][: len(rows)]
        return new, True

    def sample(self, model, prompts: list[list[int]], tokenizer, max_new_tokens: int) -> list[list[int]]:
        """Student samples at `sampling_temperature` (scd.distill.responses.student_samples)."""
        return student_samples(model, prompts, tokenizer, max_new_tokens, self.temperature)

    def log_values(self) -> dict[str, float]:
        return {"distillm/threshold": self.threshold, "distillm/buffer": float(len(self.buffer)),
                **{f"distillm/{k}_batches": float(v) for k, v in self.counts.items()}}


# The presets (scd.distill.parts.register_method's keywords): the suite's common protocol, and the reference's.
PRESETS = {
    "distillm": dict(reference=REFERENCE, display="DistiLLM (skew KL, adaptive off-policy)",
                     responses="adaptive_off_policy", divergence="skew_kl", options={"skew": 0.1}),
    "distillm_ref": dict(reference=REFERENCE + " (finetune.py, scripts/gpt2/distillm/*.sh)", protocol="reference",
                         display="DistiLLM (reference settings)", responses="adaptive_off_policy",
                         responses_options={"init_threshold": 0.0, "loss_eps": 0.1, "threshold_step": 0.1,
                                            "capacity": 1000, "replay_ratio": "decreasing",
                                            "sampling_temperature": 1.0},
                         divergence="skew_kl", options={"skew": 0.1}, alpha=1.0, temperature=1.0),
}


register_responses("adaptive_off_policy", reference=REFERENCE)(AdaptiveOffPolicy)
for _name, _spec in PRESETS.items():
    register_method(_name, **_spec)
