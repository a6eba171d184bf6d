"""One training step of a distillation method: the loss of a batch (`DistillStep`), and what an objective with
state does after every optimizer step (`ObjectiveSteps`). Both are what `scd.train.train` calls, built once per
run by the distillation stage (scd/stages/distill.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from scd.distill.methods import Method
from scd.distill.parts import Objective
from scd.distill.teacher import LiveTeacher, TeacherCache
from scd.models import logits_at
from scd.tokens import response_columns, response_mask


class DistillStep:
    """The loss of one batch: the method's response source may replace the batch's responses; the student's
    output head runs at the response columns only (or everywhere, with hidden states, for objectives that read
    them); the teacher checkpoint in use gives its logits from the cache, or from a live forward pass on sequences
    the cache has never seen; the weighting gives the per-row weights; `Method.loss` combines them. Logits of both
    sides are cut to the shared real vocabulary (`vocab_size`; embedding rows past it are padding)."""

    def __init__(self, method: Method, cache: TeacherCache, live: LiveTeacher, vocab_size: int):
        self.method, self.cache, self.live, self.vocab_size = method, cache, live, vocab_size
        self.checkpoint: str | None = None

    def use(self, checkpoint: str) -> None:
        """Learn from `checkpoint` from now on; its outputs are read (or computed in memory) now."""
        self.cache.outputs(checkpoint)
        self.checkpoint = checkpoint

    def __call__(self, model: torch.nn.Module, batch: dict, n_tokens: int) -> tuple[torch.Tensor, dict[str, float]]:
        """`n_tokens`: the response-token count of the whole optimizer step (scd.train's normalisation)."""
        method = self.method
        batch, live = method.responses.batch(batch, model, self.live)
        if live:  # sequences the cache has never seen: the checkpoint in use runs on them
            n_tokens = int(response_mask(batch["labels"]).sum())
        full, keep = batch, None
        if method.uses_hidden:  # objectives that read hidden states get every position
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        output_hidden_states=True)
            student_logits = out.logits[..., :self.vocab_size]
        else:  # the output head at the response columns only (scd.models.logits_at)
            keep = response_columns(batch["labels"])
            student_logits = logits_at(model, batch, keep, self.vocab_size)
            batch = dict(batch, labels=batch["labels"][:, keep])
        teacher_logits, inputs = None, {}
        if method.needs_teacher:
            teacher_logits, teacher_hidden = self.teacher(batch, full, keep, live)
            if method.uses_hidden:
                inputs = self.objective_inputs(model, out.hidden_states[-1], teacher_hidden, batch["input_ids"])
        weights = method.weighting.weights(batch, method.alpha)
        return method.loss(student_logits, teacher_logits, batch["labels"], weights,
                           batch["labelled"], n_tokens, **inputs)

    def teacher(self, batch: dict, full: dict, keep: torch.Tensor | None,
                live: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The checkpoint's logits on the batch (at the kept columns), and its hidden states where the method uses
        them. Live: a forward pass on the whole sequence (`full`), its logits cut to the same columns."""
        if live and keep is not None and not self.method.uses_hidden:
            return self.live.logits_at(self.checkpoint, full, keep), None
        if live:
            logits, hidden = self.live.forward(self.checkpoint, full)
            return (logits if keep is None else logits[:, keep]), hidden
        logits = self.cache.logits(self.checkpoint, batch)
        hidden = self.cache.logits(self.checkpoint, batch, kind="hidden") if self.method.uses_hidden else None
        return logits, hidden

    def objective_inputs(self, model: torch.nn.Module, student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                         input_ids: torch.Tensor) -> dict:
        """What an objective that reads hidden states receives besides the logits (see parts.Objective)."""
        v = self.vocab_size
        return {"student_hidden": student_hidden, "teacher_hidden": teacher_hidden,
                "student_head": model.get_output_embeddings().weight[:v],
                "student_embed": model.get_input_embeddings().weight[:v],
                "teacher_head": self.live.head(self.checkpoint),
                "teacher_embed": self.live.head(self.checkpoint, "input"), "input_ids": input_ids}


@dataclass
class ObjectiveSteps:
    """After every optimizer step (steps count across stages): the objective's own update with the step's loss
    (e.g. TAID's t), and every `log_every` steps its values logged (`log(metrics, step)`)."""
    objective: Objective
    total_steps: int
    log: Callable[[dict, int], None]
    log_every: int

    def __call__(self, loss: float, step: int) -> None:
        self.objective.after_step(loss, step, self.total_steps)
        if step % self.log_every == 0:
            self.log(self.objective.log_values(), step)
