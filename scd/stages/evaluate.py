"""Stage 5 (`scd evaluate`): score one trained model, or a role's model before fine-tuning, on the test split."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from scd import tracking
from scd.data import write_json, write_jsonl
from scd.evaluate import evaluation_protocol, predict, summarize
from scd.models import build_model, load_trained
from scd.prepared import Prepared
from scd.runtime import autocast, setup
from scd.settings import EvaluateJob, ZeroShotJob
from scd.stages.costs import disk_bytes, peak_rss_bytes

TRAINING_COSTS = ("train_seconds", "peak_rss_bytes", "disk_bytes")


def evaluate_model(job: EvaluateJob | ZeroShotJob, model_dir, name: str, seed: int, data, out) -> dict:
    """Stage 5: score one trained model on the test split; write the summary JSON and per-sample JSON lines.
    `zero_shot` = teacher | student scores that role's model before any fine-tuning instead (built from its
    config spec: the pretrained weights, or the seeded random initialisation of the embedded default)."""
    device = setup(seed, job.threads, job.device)
    zero_shot = job.role if isinstance(job, ZeroShotJob) else None
    prep = Prepared.open(data)
    if zero_shot:
        model = build_model(job.model, prep.tokenizer, prep.task.positions, seed).to(device)
    else:
        model = load_trained(Path(model_dir) / "best").to(device)
    rows = prep.rows("test")
    protocol = evaluation_protocol(prep.task, job.evaluation.mode)
    tags = {"task": prep.task.name, "method": name, "seed": seed, "stage": "evaluate"}
    out = Path(out)
    with tracking.job_run(job, f"{prep.task.name}/{name}/seed{seed}/eval", tags,
                          {"model_dir": str(model_dir) if model_dir else f"{zero_shot} before fine-tuning",
                           "split": "test", "seed": seed, "evaluation": prep.task.evaluation | protocol,
                           "metrics": [m["key"] for m in prep.task.metric_specs]}, str(device)) as log:
        with autocast(job.precision, device):  # bf16 matmuls; scores and softmax stay float32
            # under generation, option scoring too (a second, named set of metrics) where the task has choices
            records = predict(model, prep.tokenizer, prep.task, rows, prep.task.max_length,
                              job.evaluation.batch_size, device, mode=job.evaluation.mode, options=True)
        summary = summarize(prep.task, records, rows) | {"task": prep.task.name, "model": name, "seed": seed,
                                                         "split": "test", "run_id": log.run_id} | protocol
        train_summary = Path(model_dir) / "summary.json" if model_dir else None
        if train_summary and train_summary.exists():
            trained = json.loads(train_summary.read_text())
            summary["train_run_id"] = trained.get("run_id")
            if "method" not in trained:  # an SFT job's costs, for the compute table (a distillation's: its summary)
                summary["training"] = {k: trained[k] for k in TRAINING_COSTS if k in trained}
        metrics = {f"test/{k}": v for k, v in summary["scores"].items()}
        metrics["test/mean_gold_nll"] = summary.get("mean_gold_nll", 0)
        metrics |= {f"test/{k}/{sub}": v for sub, s in summary["subdomains"].items() for k, v in s["scores"].items()}
        log(metrics, 0)
        samples = out.with_suffix(".samples.jsonl")
        write_jsonl(samples, records)
        log.artifact_file(samples)
    summary |= {"peak_rss_bytes": peak_rss_bytes(), "disk_bytes": disk_bytes(samples)}  # this job's
    write_json(out, summary)
    return summary


def reuse_evaluation(summary: Path, seed: int, out: Path) -> dict:
    """A shared teacher's evaluation (`shared_teacher: true`) as seed `seed`'s row: the summary with its seed
    replaced and `reused_from_seed` added (its run_id stays: the MLflow run that did the evaluation), the per-sample
    records copied. The model and the test items are the same, so the numbers are too."""
    data = json.loads(Path(summary).read_text())
    data |= {"seed": seed, "reused_from_seed": data["seed"]}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(summary).with_suffix(".samples.jsonl"), out.with_suffix(".samples.jsonl"))
    write_json(out, data)
    return data
