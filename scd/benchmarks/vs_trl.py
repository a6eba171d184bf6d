"""This suite's TD step against TRL's GKDTrainer, side by side, on the same student, teacher, data and optimizer.

    python -m scd.benchmarks.vs_trl                                # tiny Llama pair, fp32 and bf16
    python -m scd.benchmarks.vs_trl --size smollm2 --steps 6       # SmolLM2-135M teacher, derived 8-layer student

Both sides train the same student (saved once, loaded by each side) from the same frozen teacher on the same rows
of a task's training split (SIB-200 English, prepared as the size's profile prepares it: the default profile's
tokenizer and model sizes for `tiny`, SmolLM2's tokenizer and models for `smollm2`), in the same batches and order
(scd.data.batches with scd.train's shuffle seed), with the same AdamW (lr, betas, weight decay), cosine schedule
and gradient clipping, the same precision (`--precision`: fp32, or bf16 autocast of the forwards) and gradient
checkpointing switch. The objective is off-policy forward KL at temperature 1 on the response tokens, summed and
divided by the step's response-token count:

- ours: scd.train.train with scd.distill.step.DistillStep, method TD with alpha 1 (no gold CE, as GKD), the teacher
  run live on every batch (`ours`), and the workflow's way (`cached`): the teacher's outputs computed once
  (scd.distill.teacher.TeacherCache) and read at every step, the one-off teacher pass counted in;
- TRL: trl.experimental.gkd.GKDTrainer with lmbda=0, beta=0, seq_kd=False (GKDTrainer's loss is at temperature 1
  whatever its config says; its labels are the unshifted inputs, so the same tokens count).

Each side runs in a subprocess of its own (its peak RSS is its own: ru_maxrss at the last step, before anything
after training), `--repeats` times, interleaved (ours, TRL, TRL, ours, ...). Seconds per step are from the steps
after `--warmup` (first-step allocations and lazy set-up), median over repeats. In fp32 the first steps' losses of
both sides must agree to 1e-6 (relative to the loss where it exceeds 1), else the run stops: the sides
compute the same thing.

Prints one JSON line per precision: s/step, tokens/s (real tokens, padding excluded) and peak RSS (MB) per side,
`speedup` = TRL's s/step / ours (above 1: ours is faster), `rss_ratio` = ours / TRL's peak RSS (below 1: ours uses
less), and for the workflow setting `cached_s_per_step` (the teacher pass spread over the steps) with
`cached_speedup`.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from scd.benchmarks.record import add_save_argument, figure, save
from scd.config import load_config, stage_config
from scd.data import batches
from scd.distill.methods import method_from_config
from scd.distill.step import DistillStep
from scd.distill.teacher import LiveTeacher, TeacherCache
from scd.models import (
    base_model,
    derive_student,
    enable_gradient_checkpointing,
    load_pretrained,
    load_trained,
    model_spec,
    save_trained,
)
from scd.prepared import Prepared
from scd.settings import Optimization
from scd.stages.prepare import prepare
from scd.train import lr_lambda, train

TASK = "sib200_eng_latn"
SIZES = {"tiny": "default", "smollm2": "smollm2"}  # size -> the profile whose tokenizer and models it uses
TD = {"schedule": "best", "divergence": "fkl", "weighting": "none", "alpha": 1.0, "temperature": 1.0}
# fp32: the first steps' losses of the two sides agree to 1e-6, of the loss where it exceeds 1 (one float32 ulp
# of a loss of 13.5 is 9.5e-7; after the first step, summation-order differences in the gradients reach the
# weights through AdamW, whose first steps move every weight by about lr whatever its gradient's size)
TOLERANCE = 1e-6
SIDES = ("ours", "trl")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def set_up(work: Path, size: str, seed: int) -> None:
    """The task's prepared data, the teacher (work/teacher/best) and the student (work/student), saved once."""
    cfg = load_config(SIZES[size], {"results_dir": str(work / "results")})
    prepare(stage_config(cfg, TASK, "prepare"), work / "data")
    prep = Prepared.open(work / "data")
    tok, length = prep.tokenizer, prep.task.max_length
    teacher = base_model(model_spec(cfg["models"], "teacher"), tok, length, seed)
    student_spec = model_spec(cfg["models"], "student")
    if student_spec.get("base"):  # derived from the teacher: cut from the model just built, not a second load
        student = derive_student(teacher, student_spec)
    else:
        student = base_model(student_spec, tok, length, seed + 1)
    save_trained(teacher, tok, work / "teacher" / "best")
    save_trained(student, tok, work / "student")


def rows_and_batches(work: Path, steps: int, batch_size: int, seed: int):
    prep = Prepared.open(work / "data")
    rows = prep.encoded("train")
    if len(rows) < steps * batch_size:
        raise SystemExit(f"{TASK} has {len(rows)} training rows: at most {len(rows) // batch_size} steps of "
                         f"{batch_size}; lower --steps")
    rows = rows[: steps * batch_size]
    # scd.train's order for epoch 0
    return prep, rows, list(batches(rows, batch_size, prep.tokenizer.pad_token_id, shuffle=True,
                                    seed=seed * 100_003))


def phase(a) -> Optimization:
    return Optimization(epochs=1, lr=a.lr, batch_size=a.batch_size, warmup_ratio=0.0, weight_decay=a.weight_decay,
                        betas=(0.9, 0.98), grad_clip=1.0)


class _LiveGold:
    """Gold responses whose teacher logits come from a live teacher forward at every step (the `ours` side)."""
    live_teacher = True

    def batch(self, batch: dict, model, live) -> tuple[dict, bool]:
        return batch, True


def run_ours(a, work: Path, cached: bool) -> dict:
    prep, rows, _ = rows_and_batches(work, a.steps, a.batch_size, a.seed)
    device = torch.device("cpu")
    vocab = len(prep.tokenizer)
    student = load_trained(work / "student")
    if a.gradient_checkpointing:
        enable_gradient_checkpointing(student)
    live = LiveTeacher(work / "teacher", prep.tokenizer, vocab, device, a.precision, batch_size=64)
    method = method_from_config("td", TD)
    teacher_pass = 0.0
    if cached:
        cache = TeacherCache.in_memory(live, rows, [])
        start = time.perf_counter()
        cache.outputs("best")  # the one-off teacher pass over the rows (what `scd teacher-outputs` does)
        teacher_pass = time.perf_counter() - start
    else:
        cache = TeacherCache.in_memory(live, rows[:0], [])
        method.responses = _LiveGold()
        live.model("best")  # loaded before training, as TRL's side loads its teacher before training
    step = DistillStep(method, cache, live, vocab)
    step.checkpoint = "best"
    stamps, losses, rss = [], [], [0.0]

    def log(metrics: dict, at: int) -> None:
        if "train/loss" in metrics:
            stamps.append(time.perf_counter())
            losses.append(metrics["train/loss"])
            if at == a.steps:
                rss[0] = peak_rss_mb()

    start = time.perf_counter()
    train(student, rows, phase(a), pad_id=prep.tokenizer.pad_token_id, seed=a.seed, loss_fn=step,
          validate=lambda m: 0.0, log=log, log_every=1, precision=a.precision, device=device, restore_best=False)
    return {"stamps": [start] + stamps[: a.steps], "losses": losses[: a.steps], "rss_mb": rss[0],
            "teacher_pass_s": teacher_pass}


def run_trl(a, work: Path) -> dict:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from transformers import TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    prep, rows, ours = rows_and_batches(work, a.steps, a.batch_size, a.seed)
    student = load_pretrained(work / "student")
    teacher = load_pretrained(work / "teacher" / "best").eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    order = [i for b in ours for i in b["index"].tolist()]
    dataset = Dataset.from_dict({"at": list(range(len(order)))})

    def collate(items: list[dict]) -> dict:
        # the same padded batch as ours; TRL shifts labels itself (labels[:, 1:] against logits[:, :-1])
        batch = ours[items[0]["at"] // a.batch_size]
        labels = torch.full_like(batch["labels"], -100)
        labels[:, 1:] = batch["labels"][:, :-1]
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}

    stamps, losses, rss = [], [], [0.0]

    class Stamps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())
            if state.global_step == a.steps:
                rss[0] = peak_rss_mb()

    class Trainer(GKDTrainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            losses.append(float((out[0] if return_outputs else out).detach()))
            return out

    params = [p for p in student.parameters() if p.requires_grad]
    p = phase(a)
    opt = torch.optim.AdamW(params, lr=p.lr, betas=tuple(p.betas), weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(a.steps, p.warmup_ratio))
    config = GKDConfig(
        output_dir=str(work / "trl-out"), per_device_train_batch_size=a.batch_size, max_steps=a.steps,
        lmbda=0.0, beta=0.0, seq_kd=False, temperature=1.0, max_grad_norm=p.grad_clip,
        bf16=a.precision == "bf16", fp16=False, gradient_checkpointing=a.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False}, use_cpu=True, seed=a.seed, data_seed=a.seed,
        logging_steps=10_000, save_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
        remove_unused_columns=False, max_length=None)
    trainer = Trainer(model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                      data_collator=collate, processing_class=prep.tokenizer, optimizers=(opt, sched),
                      callbacks=[Stamps()])
    start = time.perf_counter()
    trainer.train()
    return {"stamps": [start] + stamps[: a.steps], "losses": losses[: a.steps], "rss_mb": rss[0],
            "teacher_pass_s": 0.0}


def child(a) -> None:
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    work = Path(a.work)
    result = run_trl(a, work) if a.side == "trl" else run_ours(a, work, cached=a.side == "cached")
    print("RESULT " + json.dumps(result), flush=True)


def spawn(a, side: str, precision: str) -> dict:
    argv = [sys.executable, "-m", "scd.benchmarks.vs_trl", "--side", side, "--work", str(a.work),
            "--precision", precision, "--steps", str(a.steps), "--batch-size", str(a.batch_size),
            "--threads", str(a.threads), "--seed", str(a.seed), "--lr", str(a.lr),
            "--weight-decay", str(a.weight_decay)] + (["--gradient-checkpointing"] if a.gradient_checkpointing else [])
    done = subprocess.run(argv, capture_output=True, text=True)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"the {side} side failed ({precision}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def per_step(run: dict, warmup: int) -> float:
    t = run["stamps"]
    return (t[-1] - t[warmup]) / (len(t) - 1 - warmup)


def compare(precision: str, a, runs: dict[str, list[dict]], tokens: float) -> dict:
    med = {s: statistics.median(per_step(r, a.warmup) for r in rs) for s, rs in runs.items()}
    rss = {s: statistics.median(r["rss_mb"] for r in rs) for s, rs in runs.items()}
    out = {"size": a.size, "precision": precision, "steps": a.steps, "warmup": a.warmup, "repeats": a.repeats,
           "batch_size": a.batch_size, "threads": a.threads, "gradient_checkpointing": a.gradient_checkpointing,
           "tokens_per_step": tokens}
    for s in SIDES:
        out[f"{s}_s_per_step"] = round(med[s], 5)
        out[f"{s}_tokens_per_s"] = round(tokens / med[s], 1)
        out[f"{s}_peak_rss_mb"] = round(rss[s], 1)
    out["speedup"] = round(med["trl"] / med["ours"], 3)
    out["rss_ratio"] = round(rss["ours"] / rss["trl"], 3)
    if "cached" in runs:
        passes = statistics.median(r["teacher_pass_s"] for r in runs["cached"])
        with_pass = med["cached"] + passes / a.steps
        out.update({"cached_step_s": round(med["cached"], 5), "cached_teacher_pass_s": round(passes, 3),
                    "cached_s_per_step": round(with_pass, 5), "cached_speedup": round(med["trl"] / with_pass, 3),
                    "cached_peak_rss_mb": round(rss["cached"], 1)})
    ours, theirs = runs["ours"][0]["losses"], runs["trl"][0]["losses"]
    n = min(a.check_steps, len(ours), len(theirs))
    out["loss_max_abs_diff"] = max(abs(x - y) for x, y in zip(ours[:n], theirs[:n]))
    out["loss_max_rel_diff"] = max(abs(x - y) / max(1.0, abs(y)) for x, y in zip(ours[:n], theirs[:n]))
    out["first_losses"] = {"ours": ours[:n], "trl": theirs[:n]}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps per run (warm-up steps included)")
    ap.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    ap.add_argument("--repeats", type=int, default=3, help="runs per side, interleaved; medians reported")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gradient-checkpointing", action="store_true", help="on both sides (default: off on both)")
    ap.add_argument("--check-steps", type=int, default=3, help="fp32: first steps whose losses must agree")
    ap.add_argument("--no-cached", action="store_true", help="skip the workflow setting (cached teacher outputs)")
    ap.add_argument("--work", type=Path, help="a directory set up by an earlier run (default: a new temporary one)")
    ap.add_argument("--side", choices=["ours", "trl", "cached"], help=argparse.SUPPRESS)
    add_save_argument(ap)
    a = ap.parse_args(argv)
    if a.side:
        a.precision = a.precision[0]
        return child(a)
    if a.steps <= a.warmup + 1:
        raise SystemExit(f"--steps {a.steps} must exceed --warmup {a.warmup} by at least 2")
    if a.work is None or not (a.work / "student").is_dir():
        a.work = a.work or Path(tempfile.mkdtemp(prefix="scd-vs-trl-"))
        print(f"setting up {a.size} models and data in {a.work}", file=sys.stderr, flush=True)
        set_up(a.work, a.size, a.seed)
    _, _, order = rows_and_batches(a.work, a.steps, a.batch_size, a.seed)
    timed = order[a.warmup + 1:]
    tokens = sum(int(b["attention_mask"].sum()) for b in timed) / len(timed)
    sides = SIDES + (() if a.no_cached else ("cached",))
    figures = {}
    for precision in a.precision:
        runs: dict[str, list[dict]] = {s: [] for s in sides}
        for r in range(a.repeats):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                runs[side].append(spawn(a, side, precision))
                print(f"  {precision} repeat {r} {side:6s} {per_step(runs[side][-1], a.warmup):.4f} s/step, "
                      f"peak RSS {runs[side][-1]['rss_mb']:.0f} MB", file=sys.stderr, flush=True)
        out = compare(precision, a, runs, tokens)
        print(json.dumps(out), flush=True)
        if precision == "fp32" and out["loss_max_rel_diff"] > TOLERANCE:
            raise SystemExit(f"fp32 losses of the first {a.check_steps} steps differ by {out['loss_max_abs_diff']:.3g} "
                             f"({out['loss_max_rel_diff']:.3g} of the loss, > {TOLERANCE}): the two sides do not "
                             f"compute the same loss")
        figures |= _figures(out, a)
    save(a.save, f"vs_trl-{a.size}", "scd.benchmarks.vs_trl", argv, figures,
         notes=f"{a.size} models, batch {a.batch_size}, {a.steps} steps ({a.warmup} untimed), {a.repeats} repeats "
               "per side, interleaved; each side in its own process.")


def _figures(out: dict, a) -> dict:
    p, size = out["precision"], a.size
    figs = {f"{p} speedup": figure(out["speedup"], "x", f"{size} {p}: TRL GKDTrainer s/step / our TD step's",
                                   ">= 2"),
            f"{p} rss_ratio": figure(out["rss_ratio"], "x", f"{size} {p}: our peak RSS / TRL's", "<= 1"),
            f"{p} ours s/step": figure(out["ours_s_per_step"], "s", f"{size} {p}: our TD step"),
            f"{p} TRL s/step": figure(out["trl_s_per_step"], "s", f"{size} {p}: TRL GKDTrainer step")}
    if "cached_speedup" in out:
        figs[f"{p} cached speedup"] = figure(out["cached_speedup"], "x", f"{size} {p}: TRL's step / ours from "
                                             "shared teacher outputs, the one-off teacher pass counted in")
    return figs


if __name__ == "__main__":
    main()
