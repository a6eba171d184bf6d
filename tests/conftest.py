import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir, *args, profile="smoke", data="/nonexistent-data", env=None, timeout=300):
    """The repo's workflow run in `workdir` with a workflow profile: (exit code, stdout + stderr). Its MLflow store
    is its own (in workdir), whatever $MLFLOW_TRACKING_URI the shell running the tests has."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--workflow-profile",
           str(REPO / "profiles" / profile), "--directory", str(workdir), *args]
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    r = subprocess.run(cmd, env=base | {"SCD_DATA_DIR": str(data)} | (env or {}), capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def dry_run(workdir, *args, **kw):
    return snakemake(workdir, "--dry-run", *args, **kw)


def job_stats(out: str) -> dict[str, int]:
    """A run's job-stats table: rule -> count."""
    lines = out[out.index("Job stats:"):].splitlines()[3:]
    table = lines[: lines.index("")] if "" in lines else lines
    return {rule: int(n) for rule, n in map(str.split, table) if rule != "total"}


def resources_by_rule(out: str) -> dict[str, set[str]]:
    """rule -> the distinct `resources:` lines of its planned jobs (a dry run's job list, local rules included)."""
    found = {}
    for rule, res in re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", out, re.M):
        found.setdefault(rule, set()).add(res)
    return found


def unavailable(why: str) -> None:
    """Skip the test for a missing part of its set-up, or fail it in CI ($CI set), where everything is installed
    and fetched: there a missing part must not silently turn tests off."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{why} (CI: nothing may skip)", pytrace=False)
    pytest.skip(why)


def require(*modules: str, install: str) -> None:
    """An optional package the test needs: a skip when it is missing, a failure in CI (see `unavailable`)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed: {install}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real task data: $SCD_DATA_DIR, else ../shared/data beside the clone (as in CI). Missing: a skip, a
    failure in CI."""
    path = Path(os.environ.get("SCD_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (path / "pubmedqa").is_dir():
        unavailable(f"task data not found at {path}; set SCD_DATA_DIR or run `scd data fetch`")
    return path


TINY_SYNTHETIC = {"n_tfs_train": 200, "n_tfs_test": 50, "n_sfs_train": 50, "n_sfs_test": 50, "n_val": 40,
                  "n_transfer_tfs": 0, "n_transfer_sfs": 0}


@pytest.fixture(scope="session")
def tiny_distill(tmp_path_factory):
    """A tiny synthetic task, prepared, with a student-SFT model and teachers of 1 and 3 saved checkpoints
    (`teacher1`, `teacher3`), for distillation runs in-process. Returns (root, config(checkpoints, stages,
    methods))."""
    from scd.config import load_config, stage_config
    from scd.stages.prepare import prepare
    from scd.stages.sft import sft

    root = tmp_path_factory.mktemp("distill")

    def config(checkpoints, stages, methods=None):
        return load_config("smoke", {"results_dir": str(root), "methods": methods or {},
                                     "training": {"teacher": {"save_checkpoints": checkpoints}},
                                     "task_overrides": {"synthetic_subdomains": {
                                         "task_options": TINY_SYNTHETIC, "training": {
                                         "teacher": {"epochs": 3, "batch_size": 32},
                                         "distill": {"epochs": stages, "stages": stages, "trajectory": checkpoints,
                                                     "batch_size": 32, "probe_size": 32}}}}})

    base = config(1, 1)
    prepare(stage_config(base, "synthetic_subdomains", "prepare"), root / "data")
    for n in (1, 3):
        sft(stage_config(config(n, 1), "synthetic_subdomains", "sft", "teacher"), 0, root / "data",
            root / f"teacher{n}")
    sft(stage_config(base, "synthetic_subdomains", "sft", "student"), 0, root / "data", root / "student")
    return root, config


def prepare_tiny_jmed(root: Path, shared_data: Path, max_test: int) -> dict:
    """RRTNM (choices) and NRNER (generation) prepared small under `root` (tiny splits, a 500-token tokenizer), the
    smoke configuration writing there; returns that configuration."""
    from scd.config import load_config, stage_config
    from scd.stages.prepare import prepare

    tiny = {"max_train": 24, "max_validation": 8, "max_test": max_test}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCD_DATA_DIR", str(shared_data))
        cfg = load_config("smoke", {"results_dir": str(root), "tasks": ["rrtnm", "nrner"], "task_overrides": {
            "jmed_llm": {"task_options": tiny, "tokenizer": {"vocab_size": 500}}}})
        for task in ("rrtnm", "nrner"):
            prepare(stage_config(cfg, task, "prepare"), root / task)
    return cfg
