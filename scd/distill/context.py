"""What schedules and weightings may look at when a distillation stage starts, computed lazily and cached:
teacher-checkpoint distributions on the probe set (once per checkpoint for the whole run: from the cached teacher
logits for a probe of training rows, else by one forward pass of the live teacher's checkpoint over the probe rows
alone, since validation rows and T*-labelled transfer rows are not in the cache), the current student's (each
stage), and per-sample gold losses on the training rows of the frozen student-SFT model (once) and of teacher
checkpoints (once per checkpoint, from the cached teacher logits)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from scd.data import Encoded
from scd.distill.probe import ProbeSet
from scd.distill.teacher import LiveTeacher, TeacherCache
from scd.evaluate import gold_nll, response_logits
from scd.models import load_trained


@dataclass
class StageContext:
    checkpoints: list[str]                 # training order, "best" (T*) last
    cache: TeacherCache                    # the teacher checkpoints' outputs (read-only)
    student: torch.nn.Module               # the model being trained
    train_set: list[Encoded]
    pad_id: int
    probe: ProbeSet | None = None
    student_sft_dir: Path | None = None
    batch_size: int = 256
    stage: int = 0
    n_stages: int = 1
    history: list[str] = field(default_factory=list)
    live: LiveTeacher | None = None        # the teacher checkpoints as models: probes of rows the cache lacks
    _teacher_probe: dict = field(default_factory=dict)
    _teacher_losses: dict = field(default_factory=dict)
    _sft_losses: torch.Tensor | None = None

    def _device(self) -> torch.device:
        return next(self.student.parameters()).device

    def teacher_logprobs(self, name: str) -> torch.Tensor:
        if name not in self._teacher_probe:
            if self.probe.source == "train":
                logits = self.cache.probe_logits(name, self.probe.indices)
            elif self.live is None:
                raise ValueError(f"a probe of {self.probe.source} rows needs the live teacher: its rows are not in "
                                 f"the teacher-output cache")
            else:
                logits = self.live.response_logits(name, self.probe.rows)
            self._teacher_probe[name] = torch.log_softmax(logits.float(), -1)
        return self._teacher_probe[name]

    @torch.no_grad()
    def student_logprobs(self) -> torch.Tensor:
        was_training = self.student.training
        self.student.eval()
        p = self.probe
        logits = response_logits(self.student, p.rows, p.pad_id, p.vocab, p.batch_size, self._device())
        out = torch.log_softmax(logits, -1)
        self.student.train(was_training)
        return out

    def _sample_losses(self, model) -> torch.Tensor:
        """Gold NLL per training row (mean over its response tokens), indexed like train_set."""
        return torch.tensor(gold_nll(model, self.train_set, self.pad_id, self.batch_size, self._device()))

    def teacher_losses(self, name: str) -> torch.Tensor:
        if name not in self._teacher_losses:
            self._teacher_losses[name] = self.cache.gold_losses(name)
        return self._teacher_losses[name]

    def student_sft_losses(self) -> torch.Tensor:
        if self._sft_losses is None:
            frozen = load_trained(self.student_sft_dir / "best").to(self._device()).eval()
            self._sft_losses = self._sample_losses(frozen)
            del frozen
        return self._sft_losses
