"""What the benchmarks share: a configuration and a trained seed directory (teacher, student, teacher outputs)."""
from __future__ import annotations

import time
from pathlib import Path

from scd.config import load_config, stage_config
from scd.layout import Layout
from scd.stages.prepare import prepare
from scd.stages.sft import sft
from scd.stages.teacher_outputs import write_teacher_outputs

TASK = "synthetic_subdomains"


def benchmark_config(work: Path, trained: bool, epochs: int | None = None) -> dict:
    """The default profile's configuration writing under `work`; without a trained run, a smaller synthetic task
    (still 8 checkpoints, a transfer set and the default model sizes) that trains in minutes."""
    over: dict = {"results_dir": str(work / "results")}
    if not trained:
        over["task_overrides"] = {TASK: {"task_options": {"n_tfs_train": 2000, "n_sfs_train": 400,
                                                          "n_transfer_tfs": 1500, "n_transfer_sfs": 800},
                                "training": {"teacher": {"epochs": 4}, "student": {"epochs": 4}}}}
    if epochs:
        task = over.setdefault("task_overrides", {}).setdefault(TASK, {})
        task.setdefault("training", {})["distill"] = {"epochs": epochs}
    return load_config("default", over)


def seed_dir(work: Path, cfg: dict, run_dir: Path | None) -> Path:
    """A finished workflow seed directory, or one trained now (prepare, teacher and student SFT)."""
    if run_dir is not None:
        return run_dir
    layout = Layout(work)
    prepare(stage_config(cfg, TASK, "prepare"), layout.prepared(TASK))
    for role in ("teacher", "student"):
        sft(stage_config(cfg, TASK, "sft", role), 0, layout.prepared(TASK), layout.sft(TASK, 0, role))
    return layout.seed_dir(TASK, 0)


def teacher_cache(work: Path, cfg: dict, seed: Path) -> tuple[Path, float]:
    """All checkpoints' teacher outputs (the workflow's shared job) and the seconds they took."""
    start = time.perf_counter()
    write_teacher_outputs(stage_config(cfg, TASK, "teacher_outputs"), 0, seed.parent / "data", seed / "teacher",
                          work / "teacher_outputs")
    return work / "teacher_outputs", time.perf_counter() - start
