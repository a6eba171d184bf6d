"""The workflow refuses bad input at start (a dry run), with the message the user needs."""
import os
import subprocess
import sys

from conftest import REPO


def dry_run(tmp_path, *extra, data="/nonexistent-data"):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--workflow-profile",
           str(REPO / "profiles" / "smoke"), "--directory", str(tmp_path), "--dry-run", *extra]
    r = subprocess.run(cmd, env={**os.environ, "SCD_DATA_DIR": data}, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def test_misspelt_config_key_stops_the_run(tmp_path, shared_data):
    code, out = dry_run(tmp_path, "--config", "sedes=[0]", data=str(shared_data))
    assert code != 0 and "'sedes'" in out and "Did you mean 'seeds'" in out


def test_missing_data_stops_the_run_with_directory_files_and_source(tmp_path):
    code, out = dry_run(tmp_path)
    assert code != 0
    assert "/nonexistent-data/pubmedqa" in out and "ori_pqal.json" in out and "github.com/pubmedqa" in out


def test_valid_smoke_plan(tmp_path, shared_data):
    code, out = dry_run(tmp_path, data=str(shared_data))
    assert code == 0 and "report" in out
