"""Teacher outputs for distillation, from one place: the frozen teacher checkpoints, loaded on demand.

Everything that needs teacher logits asks this component, so caching them later (per checkpoint and row) is a
change here only.
"""
from __future__ import annotations

from pathlib import Path

import torch

from scd.models import load_pretrained


class TeacherOutputs:
    def __init__(self, teacher_dir: Path, vocab_size: int, device: torch.device, precision: str = "fp32"):
        self.dir = Path(teacher_dir)
        self.vocab_size = vocab_size  # compare only the shared real vocabulary (embeddings may be padded)
        self.device, self.precision = device, precision
        self._name: str | None = None
        self._model = None

    def checkpoints(self) -> list[str]:
        """The teacher's trajectory as schedules see it: the N saved checkpoints in training order, the last of
        them (the end of training) stood in for by `best` (T*). So N = 1 leaves only T*, and SCD and CD reduce
        to TD exactly."""
        names = sorted((p.name for p in (self.dir / "checkpoints").glob("ckpt-*")), key=lambda n: int(n.split("-")[1]))
        return names[:-1] + ["best"]

    def path(self, name: str) -> Path:
        return self.dir / "best" if name == "best" else self.dir / "checkpoints" / name

    def model(self, name: str):
        """A frozen teacher checkpoint; the one in use stays loaded, others are loaded for the call."""
        if name == self._name:
            return self._model
        path = self.path(name)
        if not path.is_dir():
            raise FileNotFoundError(f"teacher checkpoint {name!r} not found at {path}")
        model = load_pretrained(path).to(self.device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def use(self, name: str) -> None:
        """Make `name` the checkpoint whose logits `logits()` returns."""
        if name != self._name:
            self._model, self._name = self.model(name), name

    @property
    def current(self) -> str | None:
        return self._name

    @torch.no_grad()
    def logits(self, batch: dict) -> torch.Tensor:
        from scd.train import autocast

        with autocast(self.precision, self.device):
            out = self._model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return out[..., : self.vocab_size].float()
