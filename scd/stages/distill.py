"""Stage 4: distil the student-SFT model from the teacher with one method (schedule x divergence x weighting).

Training runs in N stages (epochs split evenly: N must divide them). When a stage starts, the schedule names the
teacher checkpoint to learn from and the weighting computes its sample weights; each stage starts a fresh optimizer
and LR schedule (one `train` call each) and continues from the student's last state. The result is the best state
on the validation split over all stages. TD, CD and SCD differ only in the schedule; with one stage and the `best`
schedule this is vanilla KD from T*. Teacher outputs come precomputed from `scd teacher-outputs` (or are computed
here on first use).

Before anything trains, a CD or SCD job checks that the teacher checkpoints it chooses among are distinct and in
training order (the steps in the teacher's summary.json: T* must not be a kept checkpoint's weights a second time,
nor come before one); a violation is recorded in the summary and printed as a warning (the report lists such
runs), or stops the job with `training.distill.check_trajectory: true`. SCD's
probe set comes from the split its `probe_source` names (`probe_set`); the summary records the probe and, per stage
and candidate checkpoint, both terms of SCD's score on the whole probe and per subdomain.

The job reads its settings (scd.settings.DistillJob); the loss of a batch is `scd.distill.step.DistillStep`;
the teacher side is a read-only `TeacherCache` of outputs and a `LiveTeacher` (scd/distill/teacher.py).
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from scd import tracking
from scd.data import Encoded, atomic_dir, write_json
from scd.distill.checks import require_sound
from scd.distill.context import StageContext
from scd.distill.methods import Method, method_from_config, uneven_stages
from scd.distill.probe import ProbeSet
from scd.distill.responses import needs_validation
from scd.distill.step import DistillStep, ObjectiveSteps
from scd.distill.teacher import (
    LiveTeacher,
    TeacherCache,
    live_teacher,
    open_cache,
    trajectory_steps,
    transfer_prompts,
)
from scd.distill.trajectory import TrajectoryError
from scd.evaluate import validator
from scd.models import build_model, enable_gradient_checkpointing, load_trained, save_trained
from scd.plots import histogram_svg
from scd.prepared import Prepared
from scd.runtime import setup
from scd.settings import DistillJob
from scd.stages.costs import Stopwatch, disk_bytes, peak_rss_bytes
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


def initial_student(prep: Prepared, student: Path, seed: int, init: str = "student_sft",
                    student_spec: dict | None = None, gradient_checkpointing: bool = False):
    """The student-SFT model (default), or with init `base` the base student that SFT started from (built from
    `student_spec`: the same seeded init, or the pretrained weights). AW's anchor stays the student-SFT model
    either way."""
    if init == "base":
        return build_model(student_spec, prep.tokenizer, prep.task.positions, seed)
    model = load_trained(student / "best", trainable=True)
    if gradient_checkpointing:  # as build_model does for SFT
        enable_gradient_checkpointing(model)
    return model


def distill(job: DistillJob, seed: int, data: Path, teacher: Path, student: Path, out: Path,
            teacher_cache: Path | None = None) -> dict:
    started = time.perf_counter()
    method_name, phase, stages, batch_size = job.method, job.training, job.stages, job.evaluation.batch_size
    uneven = uneven_stages(phase.epochs, stages, f"methods.{method_name}.stages" if job.spec.stages
                           else "training.distill.stages")
    if uneven:  # the configuration refuses it too (scd.config.validate); a job given as JSON is checked here
        raise ValueError(f"method {method_name!r}: {uneven}")
    stage_phase = dataclasses.replace(phase, epochs=phase.epochs // stages)  # T = epochs / N, the same every stage
    require_sound(job.spec.divergence, job.spec.options)  # a NaN or negative divergence trains nothing meaningful
    device = setup(seed, job.threads, job.device)
    prep = Prepared.open(data)
    method = method_from_config(method_name, job.spec)
    method.chunk_tokens = phase.chunk_tokens
    live = live_teacher(prep, teacher, device, job.precision, batch_size)
    checkpoints = live.checkpoints(job.trajectory)
    trajectory = {"trajectory_steps": None, "trajectory_problem": None} if job.spec.schedule == "best" \
        else trajectory_check(live, checkpoints, phase.check_trajectory)  # before any model loads
    teacher_time = Stopwatch().wrap(live, "forward", "logits_at", "generate", "response_logits",
                                    "outputs")  # the live teacher's
    cache = open_cache(prep, live, phase.transfer, teacher_cache)
    probe = probe_set(getattr(method.schedule, "probe_source", "train"), prep, cache, live, phase.probe_size, seed,
                      f"methods.{method_name}.schedule_options.probe_source")
    model = initial_student(prep, student, seed, phase.init, job.student,
                            bool((job.student or {}).get("gradient_checkpointing"))).to(device)
    vocab, pad = len(prep.tokenizer), prep.tokenizer.pad_token_id
    ctx = StageContext(checkpoints, cache, model, cache.train_rows, pad, probe=probe, student_sft_dir=student,
                       batch_size=batch_size, n_stages=stages, live=live)
    step, objective = DistillStep(method, cache, live, vocab), method.objective
    if objective is not None:
        objective.bind(model.config.hidden_size, live.head("best").shape[1])
        objective.to(device)
    validate = validator(prep, batch_size, job.evaluation.mode, job.precision, device)
    subdomains = [r.get("subdomain") for r in prep.rows("train")]
    tags = {"task": prep.task.name, "method": method_name, "seed": seed, "stage": "distill"}
    params = {"config": job, "method": job.spec, "seed": seed}  # the spec as it runs
    with atomic_dir(out) as tmp, tracking.job_run(job, f"{prep.task.name}/{method_name}/seed{seed}", tags, params,
                                                  str(device)) as log:
        n_rows = len(cache.train_rows) + len(cache.transfer_prompts)
        total_steps = stages * stage_phase.epochs * math.ceil(n_rows / stage_phase.batch_size)
        if needs_validation(method.responses):  # DistiLLM's adaptive source follows the validation loss
            method.responses.begin_run(prep.encoded("validation"), total_steps, stage_phase.batch_size)
        after_step = None if objective is None else ObjectiveSteps(objective, total_steps, log, job.log_every)
        summaries, histograms, best = [], [], (-math.inf, None, -1)  # best: (score, state, stage)
        for stage in range(stages):
            name = begin_stage(stage, method, ctx, step)
            hist = log_stage_start(log, method, ctx, name, subdomains)
            if hist:
                histograms.append(hist)
            transfer = cache.transfer_rows(name)
            rows = method.responses.stage_rows(name, cache.train_rows, transfer, cache, live)
            # Steps continue across stages in the logs; the optimizer and LR schedule restart (fresh per train()).
            result = train(model, rows, stage_phase, pad_id=pad, seed=seed * 1_000 + stage, loss_fn=step,
                           validate=validate, log=log, log_every=job.log_every, precision=job.precision, device=device,
                           restore_best=False, after_step=after_step, step_offset=sum(r["steps"] for r in summaries),
                           where=f"stage {stage + 1} of {stages}, teacher {name}", settings="training.distill",
                           extra_parameters=list(objective.parameters()) if objective is not None else None)
            state = result.pop("best_state")
            if result["best_val_score"] > best[0]:
                best = (result["best_val_score"], state, stage)
            if objective is not None:  # the loss's state (TAID's t, DSKD's projectors) at the end of the stage
                save_objective(objective, tmp / f"objective_stage{stage}.safetensors")
            summaries.append(result | {"checkpoint": name, "transfer_rows": len(transfer)})
            if hasattr(method.responses, "log_values"):  # a response source's state (DistiLLM's threshold, buffer)
                log(method.responses.log_values(), sum(r["steps"] for r in summaries))
        save_best(model, prep.tokenizer, best, objective, tmp, log)
        summary = summarise(method_name, seed, prep.task.name, method, ctx, histograms, summaries, best, started,
                            log)
        summary |= trajectory
        summary |= {"teacher_seconds": teacher_time.seconds, "peak_rss_bytes": peak_rss_bytes(),
                    "disk_bytes": disk_bytes(tmp)}  # the compute table's (the cached teacher outputs: not counted)
        write_json(tmp / "summary.json", summary)
    return summary


def trajectory_check(live: LiveTeacher, checkpoints: list[str], strict: bool = False) -> dict:
    """Stop (strict) when the checkpoints a schedule chooses among are not distinct and in training order (TD reads
    T* alone and is not checked); otherwise the summary's record: the checkpoints' steps (None without a teacher
    summary) and the problem (None: sound; also printed as a warning)."""
    record = {"trajectory_steps": trajectory_steps(live.dir, checkpoints), "trajectory_problem": None}
    try:
        live.check_trajectory(checkpoints)
    except TrajectoryError as e:
        if strict:
            raise
        print(f"warning: {e} (training.distill.check_trajectory is false: going on)", file=sys.stderr)
        record["trajectory_problem"] = str(e)
    return record


def probe_set(source: str, prep: Prepared, cache: TeacherCache, live: LiveTeacher, size: int, seed: int,
              where: str) -> ProbeSet:
    """SCD's probe: `size` rows of the `source` split (train | validation | transfer) drawn by `seed`, with their
    subdomains. Training and validation rows keep their gold responses; transfer prompts take T*'s greedy responses
    (from the teacher-output cache when it holds them, else generated for these prompts alone)."""
    pad, vocab = prep.tokenizer.pad_token_id, len(prep.tokenizer)
    if source == "train":
        return ProbeSet.sample(cache.train_rows, size, seed, pad, vocab, "train",
                               [r.get("subdomain") for r in prep.rows("train")])
    if source == "validation":
        return ProbeSet.sample(prep.encoded("validation"), size, seed, pad, vocab, "validation",
                               [r.get("subdomain") for r in prep.rows("validation")])
    prompts = transfer_prompts(prep)
    if not prompts:
        raise ValueError(f"{where} is 'transfer' but task {prep.task.name!r} has no transfer set: use train or "
                         f"validation, or give the task a transfer set (its task_options)")
    probe = ProbeSet.sample(prompts, size, seed, pad, vocab, "transfer",
                            [r.get("subdomain") for r in prep.rows("transfer")])
    chosen = [prompts[i] for i in probe.indices]
    if cache.transfer_prompts and cache.cache_dir is not None:
        held = cache.outputs("best").transfer_targets
        targets = [held[i] for i in probe.indices]
    else:
        targets = live.generate("best", chosen)
    return probe.with_rows([Encoded(p.prompt_ids, t, labelled=False) for p, t in zip(chosen, targets)])


def begin_stage(stage: int, method: Method, ctx: StageContext, step: DistillStep) -> str:
    """A stage's start: the schedule names the teacher checkpoint, the step learns from it, the weighting computes
    the stage's weights. Returns the checkpoint's name."""
    ctx.stage = stage
    name = method.schedule.choose(ctx)
    ctx.history.append(name)
    step.use(name)
    method.weighting.begin_stage(ctx, name)
    return name


def save_best(model, tokenizer, best: tuple, objective, tmp: Path, log) -> None:
    """The best state over all stages into `<out>/best`, with the objective's state of the end of its stage."""
    model.load_state_dict(best[1])
    save_trained(model, tokenizer, tmp / "best")
    if objective is not None:  # the state that belongs with the best student (the end of its stage)
        shutil.copy(tmp / f"objective_stage{best[2]}.safetensors", tmp / "best" / "objective.safetensors")
        log.artifact_file(tmp / "best" / "objective.safetensors")


def summarise(method_name: str, seed: int, task: str, method: Method, ctx: StageContext, histograms: list,
              stages: list[dict], best: tuple, started: float, log) -> dict:
    """The run's summary (summary.json), and its schedule as an MLflow artifact."""
    scores = getattr(method.schedule, "scores", None)
    summary = {"method": method_name, "seed": seed, "task": task, "schedule": ctx.history,
               "checkpoints": ctx.checkpoints, "schedule_scores": scores, "probe": ctx.probe.describe(),
               "aw_histograms": histograms,
               "stages": stages, "best_val_score": best[0], "best_stage": best[2],
               "train_seconds": sum(s["train_seconds"] for s in stages),
               "wall_seconds": time.perf_counter() - started, "run_id": log.run_id}
    log.artifact_json({"schedule": ctx.history, "checkpoints": ctx.checkpoints, "scores": scores}, "schedule.json")
    return summary


def save_objective(objective, path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in objective.state_dict().items()}, str(path))


def load_objective(objective, path: Path) -> None:
    """Restore a saved objective state into an objective built with the same options (safetensors only)."""
    objective.load_state_dict(load_file(str(path)))


def score_metrics(checkpoint: str, terms: dict) -> dict[str, float]:
    """One checkpoint's row of SCD's score matrix as metrics: schedule/<term>/<checkpoint> for the whole probe,
    schedule/subdomain/<subdomain>/<term>/<checkpoint> per subdomain."""
    out = {f"schedule/{t}/{checkpoint}": v for t, v in terms.items() if t != "subdomains"}
    for g, sub in (terms.get("subdomains") or {}).items():
        out |= {f"schedule/subdomain/{g}/{t}/{checkpoint}": v for t, v in sub.items()}
    return out


def log_stage_start(log, method, ctx: StageContext, name: str, subdomains: list) -> dict | None:
    """What a stage start decided, into MLflow (metric step = stage): the checkpoint, SCD's row of the score
    matrix (both terms per checkpoint), AW's weights (statistics, per subdomain, raw values, histogram)."""
    stage = ctx.stage
    log({"schedule/checkpoint_index": ctx.checkpoints.index(name)}, stage)
    scores = getattr(method.schedule, "scores", None)
    for c, terms in (scores[-1] if scores else {}).items():
        log(score_metrics(c, terms), stage)
    w = getattr(method.weighting, "current", None)
    if w is None:
        return None
    hist = weight_histogram(w, subdomains) | {"stage": stage, "checkpoint": name}
    log(weight_stats(w) | {f"aw/{k}": v for k, v in hist.items() if k.startswith("mean/")}, stage)
    log.artifact_json({"stage": stage, "checkpoint": name, "weights": w.tolist()}, f"aw/weights_stage{stage}.json")
    log.artifact_text(histogram_svg(hist, title=f"AW weights, stage {stage} ({name})"),
                      f"aw/histogram_stage{stage}.svg")
    return hist
