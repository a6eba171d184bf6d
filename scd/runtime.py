"""What every job does first: fix seeds and threads, pick the device; and the precision switch of model forwards."""
from __future__ import annotations

import functools
import random
import sys
from contextlib import nullcontext
from pathlib import Path

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


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX512-BF16 / AMX, Arm's BF16 extension
_warned = False


@functools.cache
def native_bf16(device_type: str) -> bool:
    """Whether the device multiplies bf16 matrices natively. A CPU without it (e.g. AVX2 only) runs bf16 matmuls
    through a slow fallback, measured at 30-190x fp32's time on such a machine: there bf16 only costs."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: assume no native bf16 (auto then means fp32)
        return False
    return any(f in flags for f in CPU_BF16_FLAGS)


def resolved_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 where the device has native bf16 matrix products, else fp32; fp32 and bf16 as they are."""
    if precision == "auto":
        return "bf16" if native_bf16(device.type) else "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    """The precision switch of model forwards (losses and softmax stay float32 wherever they are computed)."""
    global _warned
    precision = resolved_precision(precision, device)
    if precision == "bf16":
        if not native_bf16(device.type) and not _warned:
            _warned = True
            print(f"scd-bench: precision bf16 on a {device.type} without native bf16 matrix products: they run many "
                  "times slower than fp32 here; `precision: auto` picks fp32 on such machines", file=sys.stderr)
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
