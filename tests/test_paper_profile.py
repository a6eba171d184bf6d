"""The paper profile (Llama-3.1-8B teacher, Llama-3.2-3B student, on GPUs) plans its whole reproduction: a dry run
lists every job of every paper task, seed and method, with the paper's settings and one GPU per model job."""
import json
import re

import pytest
from conftest import dry_run, job_stats, resources_by_rule

from scd.config import enabled_methods, load_config

MODEL_RULES = ("sft", "teacher_outputs", "distill", "evaluate", "zero_shot")


@pytest.mark.parametrize("profile", ["paper", "paper-lora"])
def test_the_paper_profile_plans_the_whole_reproduction(profile, tmp_path, shared_data):
    cfg = load_config("paper")
    tasks, seeds, methods = cfg["tasks"], cfg["seeds"], enabled_methods(cfg)
    assert set(tasks) == {"jmmlu_med", "crade", "rrtnm", "nrner", "pubmedqa"}
    code, out = dry_run(tmp_path, "--printshellcmds", profile=profile, data=shared_data)
    assert code == 0, out[-3000:]
    runs = len(tasks) * len(seeds)
    assert job_stats(out) == {"prepare": len(tasks), "sft": 2 * runs, "zero_shot": 2 * runs, "evaluate": 2 * runs,
                               "teacher_outputs": runs, "distill": runs * len(methods), "aggregate": 1,
                               "report": 1, "all": 1}

    # every model job claims one GPU; the light ones none
    planned = resources_by_rule(out)
    assert set(planned) == {"prepare", "aggregate", "report", "all", *MODEL_RULES}
    for rule, lines in planned.items():
        assert all(("gpu=1" in line) == (rule in MODEL_RULES) for line in lines), (rule, lines)
    # the paper's settings reach the jobs that use them
    teacher = next(json.loads(c) for c in re.findall(r"scd sft --task \S+ --role teacher --seed \d+ --config '(.*?)'",
                                                      out))
    assert teacher["device"] == "cuda" and teacher["precision"] == "bf16"
    assert teacher["training"] | {"lr": None} == {"epochs": 2, "lr": None, "batch_size": 8, "micro_batch_size": None,
                                                  "warmup_ratio": 0.1, "weight_decay": 0.0, "betas": [0.9, 0.95],
                                                  "grad_clip": 1.0}
    assert teacher["role"] == "teacher" and teacher["save_checkpoints"] == 8
    spec = teacher["model"]
    assert spec["pretrained"] == "meta-llama/Llama-3.1-8B-Instruct" and spec["gradient_checkpointing"] is True
    assert ("lora" in spec) == (profile == "paper-lora")
    distill = re.findall(r"scd distill --task \S+ --method \S+ --seed \d+ --config '(.*?)'", out)
    assert len(distill) == runs * len(methods)
    assert all(json.loads(c)["student"]["gradient_checkpointing"] is True for c in distill)
    prepare = re.findall(r"scd prepare --task \S+ --config '(.*?)'", out)
    assert prepare and all(json.loads(c)["max_length"] == 512 for c in prepare)
    results = "results/paper_lora" if profile == "paper-lora" else "results/paper"
    assert f"--out {results}/pubmedqa/seed0/teacher" in out
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
