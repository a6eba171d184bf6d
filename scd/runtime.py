"""What every job does first: fix seeds and threads, pick the device; and the precision switch of model forwards."""
from __future__ import annotations

import random
from contextlib import nullcontext

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int, threads: int, device: str) -> torch.device:
    """Seeds, torch threads and device. Same seed + config + thread count on one machine -> same numbers."""
    import transformers  # here, not at module level: plugin discovery and the listings import this module

    torch.set_num_threads(threads)
    transformers.utils.logging.disable_progress_bar()  # job logs are files; progress bars only clutter them
    seed_everything(seed)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config asks for device 'cuda' but torch sees no GPU; use device: cpu or auto")
    return torch.device(device)


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
