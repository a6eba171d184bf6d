"""Stage 3b (`scd teacher-outputs`): one pass of each teacher checkpoint the task's distillations read (their
trajectories' union) over its training and transfer rows, cached for the distillation jobs (scd/distill/teacher.py
reads the cache)."""
from __future__ import annotations

import time
from pathlib import Path

from scd.data import atomic_dir, write_json
from scd.distill.teacher import live_teacher, transfer_prompts
from scd.distill.trajectory import used_checkpoints
from scd.prepared import Prepared
from scd.runtime import setup
from scd.settings import TeacherOutputsJob
from scd.stages.costs import peak_rss_bytes


def write_teacher_outputs(job: TeacherOutputsJob, seed: int, data: Path, teacher: Path, out: Path) -> dict:
    """`scd teacher-outputs`: the outputs of each checkpoint the job's trajectories pick to
    `<out>/<name>.safetensors`, plus a manifest with the time and bytes each took (the cost side of the
    checkpoint-granularity ablation)."""
    device = setup(seed, job.threads, job.device)
    prep = Prepared.open(data)
    live = live_teacher(prep, teacher, device, job.precision, job.evaluation.batch_size)
    prompts, train_rows = transfer_prompts(prep, job.transfer), prep.encoded("train")
    manifest = {"checkpoints": {}, "train_rows": len(train_rows), "transfer_rows": len(prompts)}
    with atomic_dir(out) as tmp:
        for name in used_checkpoints(live.checkpoints(), job.trajectories):
            start = time.perf_counter()
            live.outputs(name, train_rows, prompts, generate_train=name == "best").save(tmp / f"{name}.safetensors")
            ckpt_bytes = sum(f.stat().st_size for f in live.path(name).rglob("*") if f.is_file())
            manifest["checkpoints"][name] = {"seconds": time.perf_counter() - start,
                                             "cache_bytes": (tmp / f"{name}.safetensors").stat().st_size,
                                             "checkpoint_bytes": ckpt_bytes}
        manifest |= {"seconds": sum(c["seconds"] for c in manifest["checkpoints"].values()),
                     "disk_bytes": sum(c["cache_bytes"] for c in manifest["checkpoints"].values()),
                     "peak_rss_bytes": peak_rss_bytes()}  # the compute table's shared teacher cost
        write_json(tmp / "manifest.json", manifest)
    return manifest
