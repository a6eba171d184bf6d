"""The training loop shared by SFT and distillation, readable in one sitting.

AdamW, linear warm-up then cosine decay, gradient clipping; validation on the task metric after every epoch and
the best state kept (ties keep the earlier one). A fresh optimizer and schedule per call, so a staged method that
calls `train` once per stage resets both at each stage boundary.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from typing import Callable

import torch

from scd.data import Encoded, batches


def lr_lambda(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = max(1, round(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def train(model: torch.nn.Module, data: list[Encoded], phase: dict, *, pad_id: int, seed: int,
          loss_fn: Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]],
          validate: Callable[[torch.nn.Module], float], log: Callable[[dict, int], None],
          log_every: int = 10, checkpoint_steps: dict[int, str] | None = None,
          on_checkpoint: Callable[[str, int], None] | None = None,
          precision: str = "fp32", device: torch.device = torch.device("cpu"), restore_best: bool = True) -> dict:
    """Train `model` in place. With restore_best it ends in its best validated state; without, it keeps its last
    state and the summary carries the best one as `best_state` (staged training continues from the last state
    and picks its best over all stages). Returns a summary dict."""
    model.to(device)
    bs = phase["batch_size"]
    steps_per_epoch = math.ceil(len(data) / bs)
    total = phase["epochs"] * steps_per_epoch
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=phase["lr"],
                            betas=tuple(phase.get("betas", (0.9, 0.999))), weight_decay=phase.get("weight_decay", 0.0))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, phase.get("warmup_ratio", 0.0)))
    checkpoint_steps = checkpoint_steps or {}

    best_score, best_step, best_state = -math.inf, 0, None
    step, t0, tokens = 0, time.perf_counter(), 0
    for epoch in range(phase["epochs"]):
        model.train()
        for batch in batches(data, bs, pad_id, shuffle=True, seed=seed * 100_003 + epoch):
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(precision, device):
                loss, stats = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), phase["grad_clip"]) \
                if phase.get("grad_clip") else torch.tensor(0.0)
            opt.step()
            sched.step()
            step += 1
            tokens += int(batch["attention_mask"].sum())
            if step % log_every == 0 or step == total:
                log({"train/loss": float(loss.detach()), "train/grad_norm": float(grad_norm),
                     "train/lr": sched.get_last_lr()[0], "train/epoch": step / steps_per_epoch,
                     **{f"train/{k}": v for k, v in stats.items()}}, step)
            if step in checkpoint_steps and on_checkpoint:
                on_checkpoint(checkpoint_steps[step], step)
        model.eval()
        score = validate(model)
        log({"val/score": score}, step)
        if score > best_score:
            best_score, best_step = score, step
            best_state = copy.deepcopy(model.state_dict())
    seconds = time.perf_counter() - t0
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    summary = {"best_val_score": best_score, "best_step": best_step, "steps": total,
               "train_seconds": seconds, "tokens_per_second": tokens / seconds if seconds else 0.0}
    log({"train/seconds": seconds, "train/tokens_per_second": summary["tokens_per_second"]}, step)
    if not restore_best:
        summary["best_state"] = best_state
    return summary


def checkpoint_schedule(total_steps: int, n: int) -> dict[int, str]:
    """N checkpoints evenly spaced over training: step round(k * total / N) for k = 1..N, named ckpt-k."""
    if n > total_steps:
        raise ValueError(f"{n} teacher checkpoints asked for, but teacher SFT has only {total_steps} steps; "
                         f"lower `checkpoints` or train longer")
    return {round(k * total_steps / n): f"ckpt-{k}" for k in range(1, n + 1)}
