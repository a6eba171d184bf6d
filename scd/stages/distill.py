"""Stage 4: distil the student-SFT model from the teacher with one method (schedule x divergence x weighting).

Training runs in N stages (epochs split evenly). When a stage starts, the schedule names the teacher checkpoint to
learn from and the weighting computes its sample weights; each stage starts a fresh optimizer and LR schedule (one
`train` call each) and continues from the student's last state. The result is the best state on the validation
split over all stages. TD, CD and SCD differ only in the schedule; with one stage and the `best` schedule this is
vanilla KD from T*. Teacher outputs come precomputed from `scd teacher-outputs` (or are computed here on first use).
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import time
from pathlib import Path

import torch

from scd import tracking
from scd.data import atomic_dir, write_json
from scd.distill.context import StageContext
from scd.distill.methods import method_from_config
from scd.distill.probe import ProbeSet
from scd.distill.teacher import teacher_outputs
from scd.evaluate import validator
from scd.models import build_model, enable_gradient_checkpointing, load_trained, save_trained
from scd.plots import histogram_svg
from scd.prepared import Prepared
from scd.runtime import setup
from scd.settings import DistillJob
from scd.tokens import response_columns, response_mask
from scd.train import train

HIST_BINS = 20  # AW weight histograms over [0, 1]


def weight_stats(w: torch.Tensor) -> dict[str, float]:
    q = w.quantile(w.new_tensor([0.1, 0.5, 0.9])).tolist()
    return {"aw/mean": float(w.mean()), "aw/std": float(w.std()) if w.numel() > 1 else 0.0,
            "aw/p10": q[0], "aw/median": q[1], "aw/p90": q[2]}


def weight_histogram(w: torch.Tensor, groups: list[str]) -> dict:
    """Counts of w in HIST_BINS equal bins over [0, 1], overall and per subdomain (where rows carry one)."""
    def counts(x: torch.Tensor) -> list[int]:
        return torch.histc(x.float(), bins=HIST_BINS, min=0.0, max=1.0).long().tolist()

    out = {"bins": HIST_BINS, "all": counts(w)}
    for g in sorted(set(groups) - {None}):
        sel = torch.tensor([x == g for x in groups])
        out[g] = counts(w[sel])
        out[f"mean/{g}"] = float(w[sel].mean())
    return out


def initial_student(job: DistillJob, prep: Prepared, student: Path, seed: int):
    """The student-SFT model (default), or with `training.distill.init: base` the base student that SFT started
    from (the same seeded init, or the pretrained weights). AW's anchor stays the student-SFT model either way."""
    if job.training.init == "base":
        return build_model(job.student, prep.tokenizer, prep.task.positions, seed)
    model = load_trained(student / "best", trainable=True)
    if (job.student or {}).get("gradient_checkpointing"):  # as build_model does for SFT
        enable_gradient_checkpointing(model)
    return model


def distill(job: DistillJob, seed: int, data: Path, teacher: Path, student: Path, out: Path,
            teacher_cache: Path | None = None) -> dict:
    started = time.perf_counter()
    device = setup(seed, job.threads, job.device)
    prep = Prepared.open(data)
    method_name, phase, stages = job.method, job.training, job.stages
    method = method_from_config(method_name, job.spec)
    method.chunk_tokens = phase.chunk_tokens
    model = initial_student(job, prep, student, seed).to(device)
    vocab, pad = len(prep.tokenizer), prep.tokenizer.pad_token_id
    teachers = teacher_outputs(prep, job, teacher, device, teacher_cache, phase.transfer)
    train_set = teachers.train_rows
    subdomains = [r.get("subdomain") for r in prep.rows("train")]
    trajectory = teachers.checkpoints(job.trajectory)
    ctx = StageContext(trajectory, teachers, model, train_set, pad,
                       probe=ProbeSet.sample(train_set, phase.probe_size, seed, pad, vocab),
                       student_sft_dir=student, batch_size=job.evaluation.batch_size,
                       n_stages=stages)

    objective = method.objective
    if objective is not None:
        objective.bind(model.config.hidden_size, teachers.head("best").shape[1])
        objective.to(device)
    total_steps = stages * max(1, phase.epochs // stages) * math.ceil(
        (len(train_set) + len(teachers.transfer_prompts)) / phase.batch_size)

    def loss_fn(model, batch, n_tokens):
        batch, live = method.responses.batch(batch, model, teachers)
        if live:  # sequences the cache has never seen: the checkpoint in use runs on them
            n_tokens = int(response_mask(batch["labels"]).sum())
        full = batch
        if not method.uses_hidden:  # the output head at the response columns only (scd.models.forward_responses)
            keep = response_columns(batch["labels"])
            batch = dict(batch, labels=batch["labels"][:, keep])
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    output_hidden_states=method.uses_hidden, **({} if method.uses_hidden else {"logits_to_keep": keep}))
        inputs, t_logits = {}, None
        if method.needs_teacher:
            # live: the teacher runs on the whole sequence, its logits cut to the same columns
            t_logits, t_hidden = teachers.live(full) if live else (teachers.logits(batch), None)
            if live and not method.uses_hidden:
                t_logits = t_logits[:, keep]
            if method.uses_hidden:
                t_hidden = t_hidden if live else teachers.logits(batch, kind="hidden")
                inputs = {"student_hidden": out.hidden_states[-1], "teacher_hidden": t_hidden,
                          "student_head": model.get_output_embeddings().weight[:vocab],
                          "student_embed": model.get_input_embeddings().weight[:vocab],
                          "teacher_head": teachers.head(), "teacher_embed": teachers.head(kind="input"),
                          "input_ids": batch["input_ids"]}
        weights = method.weighting.weights(batch, method.alpha)
        return method.loss(out.logits[..., :vocab], t_logits, batch["labels"], weights, batch["labelled"],
                           n_tokens, **inputs)

    def after_step(loss: float, step: int) -> None:
        if objective is not None:
            objective.after_step(loss, offset + step, total_steps)
            if (offset + step) % job.log_every == 0:
                log(objective.log_values(), offset + step)

    tags = {"task": prep.task.name, "method": method_name, "seed": seed, "stage": "distill"}
    stage_phase = dataclasses.replace(phase, epochs=max(1, phase.epochs // stages))  # T = epochs // N, at least 1
    params = {"config": job, "method": job.spec, "seed": seed}  # the spec as it runs
    with atomic_dir(out) as tmp, tracking.job_run(job, f"{prep.task.name}/{method_name}/seed{seed}", tags, params,
                                                  str(device)) as log:
        summaries, offset, best, histograms = [], 0, (-math.inf, None, -1), []
        for stage in range(stages):
            ctx.stage = stage
            name = method.schedule.choose(ctx)
            ctx.history.append(name)
            teachers.use(name)
            method.weighting.begin_stage(ctx, name)
            hist = log_stage_start(log, method, ctx, name, subdomains)
            if hist:
                histograms.append(hist)
            transfer = teachers.transfer_rows(name)
            stage_data = method.responses.stage_rows(teachers, name, train_set, transfer)
            # Steps continue across stages in the logs; the optimizer and LR schedule restart (fresh per train()).
            s = train(model, stage_data, stage_phase, pad_id=pad, seed=seed * 1_000 + stage, loss_fn=loss_fn,
                      validate=validator(prep, job.evaluation.batch_size, job.evaluation.mode, job.precision, device),
                      log=lambda m, step: log(m, offset + step), log_every=job.log_every, precision=job.precision,
                      device=device,
                      restore_best=False, after_step=after_step,
                      extra_parameters=list(objective.parameters()) if objective is not None else None)
            state = s.pop("best_state")
            if s["best_val_score"] > best[0]:
                best = (s["best_val_score"], state, stage)
            if objective is not None:  # the loss's state (TAID's t, DSKD's projectors) at the end of the stage
                save_objective(objective, tmp / f"objective_stage{stage}.safetensors")
            offset += s["steps"]
            summaries.append(s | {"checkpoint": name, "transfer_rows": len(transfer)})
        model.load_state_dict(best[1])
        save_trained(model, prep.tokenizer, tmp / "best")
        if objective is not None:  # the state that belongs with the best student (the end of its stage)
            shutil.copy(tmp / f"objective_stage{best[2]}.safetensors", tmp / "best" / "objective.safetensors")
            log.artifact_file(tmp / "best" / "objective.safetensors")
        scores = getattr(method.schedule, "scores", None)
        summary = {"method": method_name, "seed": seed, "task": prep.task.name, "schedule": ctx.history,
                   "checkpoints": ctx.checkpoints, "schedule_scores": scores, "aw_histograms": histograms,
                   "stages": summaries, "best_val_score": best[0], "best_stage": best[2],
                   "train_seconds": sum(s["train_seconds"] for s in summaries),
                   "wall_seconds": time.perf_counter() - started, "run_id": log.run_id}
        log.artifact_json({"schedule": ctx.history, "checkpoints": ctx.checkpoints, "scores": scores},
                          "schedule.json")
        write_json(tmp / "summary.json", summary)
    return summary


def save_objective(objective, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in objective.state_dict().items()}, str(path))


def load_objective(objective, path: Path) -> None:
    """Restore a saved objective state into an objective built with the same options (safetensors only)."""
    from safetensors.torch import load_file

    objective.load_state_dict(load_file(str(path)))


def log_stage_start(log, method, ctx: StageContext, name: str, subdomains: list) -> dict | None:
    """What a stage start decided, into MLflow (metric step = stage): the checkpoint, SCD's row of the score
    matrix (both terms per checkpoint), AW's weights (statistics, per subdomain, raw values, histogram)."""
    stage = ctx.stage
    log({"schedule/checkpoint_index": ctx.checkpoints.index(name)}, stage)
    scores = getattr(method.schedule, "scores", None)
    for c, terms in (scores[-1] if scores else {}).items():
        log({f"schedule/{t}/{c}": v for t, v in terms.items()}, stage)
    w = getattr(method.weighting, "current", None)
    if w is None:
        return None
    hist = weight_histogram(w, subdomains) | {"stage": stage, "checkpoint": name}
    log(weight_stats(w) | {f"aw/{k}": v for k, v in hist.items() if k.startswith("mean/")}, stage)
    log.artifact_json({"stage": stage, "checkpoint": name, "weights": w.tolist()}, f"aw/weights_stage{stage}.json")
    log.artifact_text(histogram_svg(hist, title=f"AW weights, stage {stage} ({name})"),
                      f"aw/histogram_stage{stage}.svg")
    return hist
