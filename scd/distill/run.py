"""Stage 4: distil the student-SFT model from the teacher with one method (schedule x divergence x weighting).

Training runs in stages; at the start of each, the schedule names the teacher checkpoint to learn from, and each
stage starts a fresh optimizer and LR schedule (see scd/train.py). With one stage and the `best` schedule this is
TD, vanilla KD from the best teacher.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from scd import tracking
from scd.data import write_json
from scd.distill.methods import method_from_config
from scd.distill.teacher import TeacherOutputs
from scd.models import load_pretrained
from scd.runtime import Prepared, setup
from scd.sft import save_model, validator
from scd.train import train


def distill(cfg: dict, method_name: str, seed: int, data: Path, teacher: Path, student: Path, out: Path) -> dict:
    device = setup(cfg, seed)
    prep = Prepared.open(data)
    spec = cfg["methods"][method_name]
    method = method_from_config(method_name, spec)
    phase = cfg["training"]["distill"]
    stages = phase.get("stages", 1)
    model = load_pretrained(student / "best").to(device)
    vocab = len(prep.tokenizer)
    teachers = TeacherOutputs(teacher, vocab, device, cfg.get("precision", "fp32"))
    train_set = prep.encoded("train")

    def loss_fn(model, batch):
        student_logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        weights = method.weighting.weights(batch, method.alpha)
        return method.loss(student_logits[..., :vocab], teachers.logits(batch), batch["labels"], weights)

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tags = {"task": prep.task.name, "method": method_name, "seed": seed, "stage": "distill"}
    with tracking.job_run(cfg, f"{prep.task.name}/{method_name}/seed{seed}", tags,
                          {"config": cfg, "method": spec, "seed": seed}, str(device)) as log:
        stage_phase = {k: v for k, v in phase.items() if k != "stages"}
        stage_phase["epochs"] = max(1, phase["epochs"] // stages)
        chosen, summaries, offset = [], [], 0
        for stage in range(stages):
            name = method.schedule.choose(stage, teachers.checkpoints())
            teachers.use(name)
            chosen.append(name)
            # Steps continue across stages in the logs; the optimizer and LR schedule restart (fresh per train()).
            s = train(model, train_set, stage_phase, pad_id=prep.tokenizer.pad_token_id, seed=seed * 1_000 + stage,
                      loss_fn=loss_fn, validate=validator(prep, cfg, device),
                      log=lambda m, step: log(m, offset + step), log_every=cfg.get("log_every", 10),
                      precision=cfg.get("precision", "fp32"), device=device)
            offset += s["steps"]
            summaries.append(s)
        save_model(model, prep.tokenizer, tmp / "best")
        summary = {"method": method_name, "seed": seed, "task": prep.task.name, "schedule": chosen,
                   "stages": summaries, "best_val_score": summaries[-1]["best_val_score"],
                   "train_seconds": sum(s["train_seconds"] for s in summaries), "run_id": log.run_id}
        log.artifact_json({"schedule": chosen}, "schedule.json")
        write_json(tmp / "summary.json", summary)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return summary
