"""The training loop shared by SFT and distillation, readable in one sitting.

AdamW, linear warm-up then cosine decay, gradient clipping; validation on the task metric after every epoch and
the best state kept (ties keep the earlier one). A fresh optimizer and schedule per call, so a staged method that
calls `train` once per stage resets both at each stage boundary.

Gradient accumulation (`micro_batch_size` below `batch_size`): one optimizer step per batch, forward/backward per
micro-batch, and every micro-batch loss is normalised by the valid-token count of the whole batch (`loss_fn`
receives it), so the step's gradient equals the full batch's (conventions: baselines/CONVENTIONS.md).

A loss (or, with clipping, a gradient norm) that is NaN or infinite stops the run with `TrainingDiverged`, before
the optimizer applies the step: nothing after it (checkpoints, the best state, a summary, a leaderboard row) would
mean anything.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import torch

from scd.data import Encoded, batches
from scd.runtime import autocast
from scd.settings import Optimization
from scd.tokens import response_mask


class TrainingDiverged(ValueError):
    """The loss (or, under clipping, the gradient norm) became NaN or infinite; the message names the step, the
    loss and its terms, and what to change (`settings`: the config key of the phase, e.g. training.distill)."""

    def __init__(self, step: int, loss: float, terms: dict, where: str = "", settings: str = "",
                 grad_norm: float | None = None, clipped: bool = False):
        self.step, self.loss, self.terms, self.grad_norm = step, loss, dict(terms), grad_norm
        at = f"step {step}" + (f" ({where})" if where else "")
        what = f"loss {_fmt(loss)}" if grad_norm is None else f"gradient norm {_fmt(grad_norm)} (loss {_fmt(loss)})"
        listed = " ".join(f"{k}={_fmt(v)}" for k, v in terms.items())
        fix = f"lower the learning rate ({settings}.lr)" if settings else "lower the learning rate"
        if not clipped:
            fix += f" or set {settings + '.' if settings else ''}grad_clip (e.g. 1.0)"
        super().__init__(f"training diverged at {at}: {what}" + (f"; terms: {listed}" if listed else "") + f"; {fix}")


def _fmt(x) -> str:
    return f"{float(x):.4g}"


def lr_lambda(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = max(1, round(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def train(model: torch.nn.Module, data: list[Encoded], phase: Optimization, *, pad_id: int, seed: int,
          loss_fn: Callable[[torch.nn.Module, dict, int], tuple[torch.Tensor, dict]],
          validate: Callable[[torch.nn.Module], float], log: Callable[[dict, int], None],
          log_every: int = 10, checkpoint_steps: dict[int, str] | None = None,
          on_checkpoint: Callable[[str, int], None] | None = None,
          precision: str = "fp32", device: torch.device = torch.device("cpu"), restore_best: bool = True,
          extra_parameters: list[torch.nn.Parameter] | None = None,
          after_step: Callable[[float, int], None] | None = None, step_offset: int = 0, where: str = "",
          settings: str = "") -> dict:
    """Train `model` in place. With restore_best it ends in its best validated state; without, it keeps its last
    state and the summary carries the best one as `best_state` (staged training continues from the last state
    and picks its best over all stages). `extra_parameters` (e.g. a loss's projectors) train along with the
    model; `after_step(loss, step)` runs after every optimizer step. Steps seen by `log` and `after_step` are
    `step_offset + step`, so a staged run's steps continue across its `train` calls; everything else (the LR
    schedule, `log_every`, `checkpoint_steps`, the summary's `best_step` and `steps`) counts this call's steps.
    A NaN or infinite loss raises TrainingDiverged naming the step (as `log` sees it), `where` (e.g. "stage 2 of
    4") and the config key of the phase's settings (`settings`, e.g. "training.distill") in its advice.
    Returns a summary dict."""
    model.to(device)
    bs = phase.batch_size
    micro = phase.micro_batch_size or bs
    steps_per_epoch = math.ceil(len(data) / bs)
    total = phase.epochs * steps_per_epoch
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_parameters or [])
    opt = torch.optim.AdamW(params, lr=phase.lr, betas=tuple(phase.betas), weight_decay=phase.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, phase.warmup_ratio))
    checkpoint_steps = checkpoint_steps or {}

    best_score, best_step, best_state = -math.inf, 0, None
    step, t0, tokens, val_seconds = 0, time.perf_counter(), 0, 0.0
    for epoch in range(phase.epochs):
        model.train()
        for batch in batches(data, bs, pad_id, shuffle=True, seed=seed * 100_003 + epoch):
            batch = {k: v.to(device) for k, v in batch.items()}
            n_tokens = int(response_mask(batch["labels"]).sum())  # of the whole step, not of one micro-batch
            opt.zero_grad(set_to_none=True)
            loss, stats = 0.0, {}
            for start in range(0, batch["input_ids"].shape[0], micro):
                part = {k: v[start: start + micro] for k, v in batch.items()}
                with autocast(precision, device):
                    part_loss, part_stats = loss_fn(model, part, n_tokens)
                part_loss.backward()
                loss = loss + part_loss.detach()
                parts = -(-batch["input_ids"].shape[0] // micro)
                # token-normalised terms add up over micro-batches; means (e.g. weight_mean) average
                stats = {k: stats.get(k, 0.0) + (v / parts if k.endswith("_mean") else v)
                         for k, v in part_stats.items()}
            if not math.isfinite(float(loss)):
                raise TrainingDiverged(step_offset + step + 1, float(loss), stats, where, settings,
                                       clipped=bool(phase.grad_clip))
            grad_norm = torch.nn.utils.clip_grad_norm_(params, phase.grad_clip) \
                if phase.grad_clip else torch.tensor(0.0)
            if not math.isfinite(float(grad_norm)):  # clipping would scale the step by 1 / inf, or NaN
                raise TrainingDiverged(step_offset + step + 1, float(loss), stats, where, settings,
                                       grad_norm=float(grad_norm), clipped=True)
            opt.step()
            sched.step()
            step += 1
            if after_step:
                after_step(float(loss), step_offset + step)
            tokens += int(batch["attention_mask"].sum())
            if step % log_every == 0 or step == total:
                log({"train/loss": float(loss.detach()), "train/grad_norm": float(grad_norm),
                     "train/lr": sched.get_last_lr()[0], "train/epoch": step / steps_per_epoch,
                     **{f"train/{k}": v for k, v in stats.items()}}, step_offset + step)
            if step in checkpoint_steps and on_checkpoint:
                on_checkpoint(checkpoint_steps[step], step)
        model.eval()
        val_start = time.perf_counter()
        score = validate(model)
        val_seconds += time.perf_counter() - val_start
        if not math.isfinite(score):  # no state would ever count as the best: stop here, saying why
            raise ValueError(f"validation score {score} after epoch {epoch + 1}" + (f" ({where})" if where else "")
                             + ": the task's metric gave no number; check its predictions in the MLflow run's log")
        log({"val/score": score}, step_offset + step)
        if score > best_score:
            best_score, best_step = score, step
            best_state = copy.deepcopy(model.state_dict())
    seconds = time.perf_counter() - t0
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    summary = {"best_val_score": best_score, "best_step": best_step, "steps": total, "val_seconds": val_seconds,
               "train_seconds": seconds, "tokens_per_second": tokens / seconds if seconds else 0.0}
    log({"train/seconds": seconds, "train/tokens_per_second": summary["tokens_per_second"]}, step_offset + step)
    if not restore_best:
        summary["best_state"] = best_state
    return summary


def checkpoint_schedule(total_steps: int, n: int) -> dict[int, str]:
    """N checkpoints evenly spaced over training: step round(k * total / N) for k = 1..N, named ckpt-k."""
    if n > total_steps:
        raise ValueError(f"{n} teacher checkpoints asked for, but teacher SFT has only {total_steps} steps; "
                         f"lower `training.teacher.save_checkpoints` or train longer")
    return {round(k * total_steps / n): f"ckpt-{k}" for k in range(1, n + 1)}
