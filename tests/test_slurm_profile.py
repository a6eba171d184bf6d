"""profiles/slurm with snakemake-executor-plugin-slurm: the plan carries each rule's Slurm resources, and a job
reaches sbatch with them (a stand-in sbatch on PATH records the call; no cluster is needed).

The plan is the paper's reproduction (`--config profile=paper`); the sbatch call is a smoke job's. The profile sets no
`profile=`, so any overlay combines with it through --config. Outside CI a missing plugin skips these tests; in CI
($CI set) it fails them."""
import os

import pytest
from conftest import dry_run, job_stats, require, resources_by_rule, snakemake

from scd.config import load_config, stage_config

GPU_RULES = {"sft", "teacher_outputs", "distill", "evaluate", "zero_shot"}


@pytest.fixture(autouse=True)
def _require_plugin():
    require("snakemake_executor_plugin_slurm", install='pip install -e ".[slurm]"')


def test_plan_gives_training_rules_a_gpu_and_keeps_the_site_settings(tmp_path, shared_data):
    # a user's site profile, as the profile's header says: account and partition for every job
    site = tmp_path / "site"
    site.mkdir()
    (site / "config.yaml").write_text("default-resources:\n  - slurm_account=abc123\n  - slurm_partition=gpu\n")
    code, out = dry_run(tmp_path, "--profile", str(site), "--config", "profile=paper", profile="slurm",
                        data=shared_data)
    assert code == 0, out[-3000:]
    assert GPU_RULES | {"prepare", "aggregate", "report"} <= set(job_stats(out)), job_stats(out)
    res = resources_by_rule(out)
    for rule in GPU_RULES:
        (line,) = res[rule]
        for want in ("gpu=1", "cpus_per_task=8", "runtime=", "mem_mb=", "slurm_account=abc123", "slurm_partition=gpu"):
            assert want in line, (rule, want, line)
    (distill,), (prepare,) = res["distill"], res["prepare"]
    assert "mem_mb=96000" in distill  # teacher and student in memory at once
    assert "gpu=" not in prepare and "slurm_account=abc123" in prepare


def test_job_reaches_sbatch_with_its_resources(tmp_path, shared_data):
    # Upstream outputs in place, so the one job to submit is a distillation; the stand-in sbatch records its
    # arguments and refuses, which ends the run at once.
    task = tmp_path / "results" / "smoke" / "synthetic_subdomains"
    for d in ("data", "seed0/teacher", "seed0/teacher_outputs", "seed0/student"):
        (task / d).mkdir(parents=True)
    n = stage_config(load_config("smoke"), "synthetic_subdomains", "sft", "teacher").save_checkpoints
    for name in [f"ckpt-{k}" for k in range(1, n)] + ["best", "manifest"]:  # the teacher-output cache's files
        (task / "seed0" / "teacher_outputs" / f"{name}.{'json' if name == 'manifest' else 'safetensors'}").touch()
    bin_dir, calls = tmp_path / "bin", tmp_path / "sbatch.args"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "no cluster here" >&2\nexit 1\n')
    for tool in ("sinfo", "squeue", "sacct", "sacctmgr", "scontrol"):  # the plugin's probes: answer nothing
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)

    code, out = snakemake(tmp_path, "--config", "profile=smoke", "--slurm-no-account",
                          "--slurm-init-seconds-before-status-checks", "1",
                          "results/smoke/synthetic_subdomains/seed0/eval/td.json", profile="slurm", data=shared_data,
                          env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert code != 0 and "no cluster here" in out, out[-3000:]
    (call,) = calls.read_text().splitlines()
    assert "--comment rule_distill_" in call
    # --export=ALL: $MLFLOW_TRACKING_URI and the invocation's parent run id go with every job
    for flag in ("--gpus=1", "--mem 96000", "-t 2880", "--cpus-per-task=8", "--export=ALL"):
        assert flag in call, (flag, call)
    # the job's own snakemake sees the same overlay, so it builds the same configuration
    assert "--config 'profile=smoke'" in call
