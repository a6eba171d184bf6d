"""Stage 4: distil the student-SFT model from the teacher with one method (schedule x divergence x weighting).

Training runs in `stages` stages (epochs split evenly). When a stage starts, the schedule names the teacher
checkpoint to learn from and the weighting computes its sample weights; each stage starts a fresh optimizer and
LR schedule (one `train` call each) and continues from the student's last state. The result is the best state on
the validation split over all stages. With one stage and the `best` schedule this is TD, vanilla KD from T*.
"""
from __future__ import annotations

import math
from pathlib import Path

from scd import tracking
from scd.data import Encoded, atomic_dir, encode, write_json
from scd.distill.context import StageContext
from scd.distill.methods import method_from_config
from scd.distill.probe import ProbeSet
from scd.distill.teacher import TeacherOutputs
from scd.evaluate import generate
from scd.models import load_pretrained
from scd.runtime import Prepared, setup
from scd.sft import save_model, validator
from scd.train import train


def weight_stats(w) -> dict[str, float]:
    q = w.quantile(w.new_tensor([0.1, 0.5, 0.9])).tolist()
    return {"aw/mean": float(w.mean()), "aw/std": float(w.std()) if w.numel() > 1 else 0.0,
            "aw/p10": q[0], "aw/median": q[1], "aw/p90": q[2]}


def transfer_targets(prep: Prepared, teachers: TeacherOutputs, name: str, batch_size: int, device) -> list[Encoded]:
    """The transfer set labelled by teacher checkpoint `name`: its greedy outputs become the rows' targets."""
    rows = [dict(r, answer="") for r in prep.rows("transfer")]
    prompts = encode(rows, prep.tokenizer, prep.task.max_length)
    texts = generate(teachers.model(name), prep.tokenizer, prompts, prep.task.evaluation.get("max_new_tokens", 16),
                     batch_size, device)
    eos = prep.tokenizer.eos_token_id
    return [Encoded(p.prompt_ids, prep.tokenizer(t, add_special_tokens=False)["input_ids"] + [eos], labelled=False)
            for p, t in zip(prompts, texts)]


def distill(cfg: dict, method_name: str, seed: int, data: Path, teacher: Path, student: Path, out: Path) -> dict:
    device = setup(cfg, seed)
    prep = Prepared.open(data)
    spec = cfg["methods"][method_name]
    method = method_from_config(method_name, spec)
    phase = cfg["training"]["distill"]
    stages = phase.get("stages", 1)
    model = load_pretrained(student / "best").to(device)
    vocab, pad = len(prep.tokenizer), prep.tokenizer.pad_token_id
    teachers = TeacherOutputs(teacher, vocab, device, cfg.get("precision", "fp32"))
    train_set = prep.encoded("train")
    use_transfer = phase.get("transfer", True) and (prep.dir / "transfer.jsonl").exists()
    transfer: dict[str, list[Encoded]] = {}  # per teacher checkpoint
    ctx = StageContext(teachers.checkpoints(), teachers, model, train_set, pad,
                       probe=ProbeSet.sample(train_set, phase.get("probe_size", 256), seed, pad, vocab),
                       student_sft_dir=student, batch_size=cfg.get("evaluation", {}).get("batch_size", 64),
                       n_stages=stages)

    def loss_fn(model, batch):
        student_logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        weights = method.weighting.weights(batch, method.alpha)
        return method.loss(student_logits[..., :vocab], teachers.logits(batch), batch["labels"], weights,
                           batch["labelled"])

    tags = {"task": prep.task.name, "method": method_name, "seed": seed, "stage": "distill"}
    stage_phase = {k: v for k, v in phase.items() if k not in ("stages", "probe_size", "transfer")}
    stage_phase["epochs"] = max(1, phase["epochs"] // stages)
    with atomic_dir(out) as tmp, tracking.job_run(cfg, f"{prep.task.name}/{method_name}/seed{seed}", tags,
                                                  {"config": cfg, "method": spec, "seed": seed}, str(device)) as log:
        summaries, offset, best = [], 0, (-math.inf, None, -1)
        for stage in range(stages):
            ctx.stage = stage
            name = method.schedule.choose(ctx)
            ctx.history.append(name)
            teachers.use(name)
            method.weighting.begin_stage(ctx, name)
            index = ctx.checkpoints.index(name)
            log({"schedule/checkpoint_index": index}, offset)
            w = getattr(method.weighting, "current", None)
            if w is not None:
                log(weight_stats(w), offset)
                log.artifact_json({"stage": stage, "checkpoint": name, "weights": w.tolist()},
                                  f"aw/weights_stage{stage}.json")
            stage_data = train_set
            if use_transfer:
                if name not in transfer:
                    transfer[name] = transfer_targets(prep, teachers, name, ctx.batch_size, device)
                stage_data = train_set + transfer[name]  # indices past len(train_set) are transfer rows
            # Steps continue across stages in the logs; the optimizer and LR schedule restart (fresh per train()).
            s = train(model, stage_data, stage_phase, pad_id=pad, seed=seed * 1_000 + stage, loss_fn=loss_fn,
                      validate=validator(prep, cfg, device), log=lambda m, step: log(m, offset + step),
                      log_every=cfg.get("log_every", 10), precision=cfg.get("precision", "fp32"), device=device,
                      restore_best=False)
            state = s.pop("best_state")
            if s["best_val_score"] > best[0]:
                best = (s["best_val_score"], state, stage)
            offset += s["steps"]
            summaries.append(s | {"checkpoint": name, "transfer_rows": len(stage_data) - len(train_set)})
        model.load_state_dict(best[1])
        save_model(model, prep.tokenizer, tmp / "best")
        scores = getattr(method.schedule, "scores", None)
        summary = {"method": method_name, "seed": seed, "task": prep.task.name, "schedule": ctx.history,
                   "stages": summaries, "best_val_score": best[0], "best_stage": best[2],
                   "train_seconds": sum(s["train_seconds"] for s in summaries), "run_id": log.run_id}
        log.artifact_json({"schedule": ctx.history, "checkpoints": ctx.checkpoints, "scores": scores},
                          "schedule.json")
        write_json(tmp / "summary.json", summary)
    return summary
