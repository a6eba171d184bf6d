"""What every job does first: fix seeds and threads, pick the device, and open the prepared task data."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import transformers

from scd.data import Encoded, encode, read_jsonl
from scd.tokenizer import load_tokenizer
from tasks import Task, get_task


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(cfg: dict, seed: int) -> torch.device:
    """Seeds, torch threads and device. Same seed + config + thread count on one machine -> same numbers."""
    torch.set_num_threads(cfg.get("threads", 1))
    transformers.utils.logging.disable_progress_bar()  # job logs are files; progress bars only clutter them
    seed_everything(seed)
    device = cfg.get("device", "cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config asks for device 'cuda' but torch sees no GPU; use device: cpu or auto")
    return torch.device(device)


@dataclass
class Prepared:
    """A task's prepared splits and tokenizer, as `scd prepare` wrote them."""
    task: Task
    dir: Path
    tokenizer: object
    manifest: dict

    @classmethod
    def open(cls, data_dir: str | Path) -> "Prepared":
        data_dir = Path(data_dir)
        manifest_path = data_dir / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{data_dir} holds no prepared data (no manifest.json); run `scd prepare` first")
        manifest = json.loads(manifest_path.read_text())
        task = get_task(manifest["task"])
        task = replace(task, max_length=manifest.get("max_length", task.max_length))  # as prepared
        return cls(task, data_dir, load_tokenizer(data_dir / "tokenizer"), manifest)

    def rows(self, split: str) -> list[dict]:
        return read_jsonl(self.dir / f"{split}.jsonl")

    def encoded(self, split: str) -> list[Encoded]:
        return encode(self.rows(split), self.tokenizer, self.task.max_length)
