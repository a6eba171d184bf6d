"""Stage 2/3: supervised fine-tuning of the teacher or the student on gold responses.

The teacher run also saves N checkpoints evenly spaced over its steps (`checkpoints/ckpt-k`), the trajectory that
checkpoint schedules (CD, SCD) distil from; both roles save their best validated state as `best/`.
"""
from __future__ import annotations

import math
from pathlib import Path

from scd import tracking
from scd.data import atomic_dir, write_json
from scd.evaluate import validator
from scd.models import build_model, count_parameters, forward_responses, save_trained
from scd.prepared import Prepared
from scd.runtime import setup
from scd.settings import SFTJob
from scd.stages.costs import disk_bytes, peak_rss_bytes
from scd.tokens import masked_mean, response_mask, token_ce
from scd.train import checkpoint_schedule, train


def ce_loss(model, batch, n_tokens: int | None = None):
    """Gold CE summed over the batch's response tokens / n_tokens (the step's count under accumulation)."""
    out, labels = forward_responses(model, batch)
    mask = response_mask(labels)
    if n_tokens is None:
        return masked_mean(token_ce(out.logits, labels), mask), {}
    return (token_ce(out.logits, labels) * mask).sum() / max(n_tokens, 1), {}


def sft(job: SFTJob, seed: int, data: Path, out: Path) -> dict:
    device = setup(seed, job.threads, job.device)
    prep = Prepared.open(data)
    role, phase = job.role, job.training
    model = build_model(job.model, prep.tokenizer, prep.task.positions, seed)
    train_set = prep.encoded("train")
    total = phase.epochs * math.ceil(len(train_set) / phase.batch_size)
    ckpts = checkpoint_schedule(total, job.save_checkpoints) if job.save_checkpoints else {}

    tags = {"task": prep.task.name, "method": f"{role}_sft", "seed": seed, "stage": f"{role}_sft"}
    with atomic_dir(out) as tmp, tracking.job_run(job, f"{prep.task.name}/{role}_sft/seed{seed}", tags,
                                                  {"config": job, "seed": seed, "parameters": count_parameters(model),
                                                   "trainable_parameters": count_parameters(model, trainable=True)},
                                                  str(device)) as log:
        summary = train(
            model, train_set, phase, pad_id=prep.tokenizer.pad_token_id, seed=seed, loss_fn=ce_loss,
            validate=validator(prep, job.evaluation.batch_size, job.evaluation.mode, job.precision, device), log=log,
            log_every=job.log_every, checkpoint_steps=ckpts, precision=job.precision, device=device,
            where=f"{role} SFT", settings=f"training.{role}",
            on_checkpoint=lambda name, step: save_trained(model, prep.tokenizer, tmp / "checkpoints" / name))
        save_trained(model, prep.tokenizer, tmp / "best")
        summary |= {"role": role, "seed": seed, "task": prep.task.name, "parameters": count_parameters(model),
                    "checkpoints": {name: step for step, name in ckpts.items()}, "run_id": log.run_id}
        log({"best_val_score": summary["best_val_score"]}, summary["steps"])
        summary |= {"peak_rss_bytes": peak_rss_bytes(), "disk_bytes": disk_bytes(tmp)}  # the compute table's
        write_json(tmp / "summary.json", summary)
    return summary
