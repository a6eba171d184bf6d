"""The workflow refuses bad input at start (a dry run), with the message the user needs."""
from conftest import REPO, dry_run, job_stats


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


def test_ablations_add_variant_runs_only(tmp_path, shared_data):
    code, out = dry_run(tmp_path, data=str(shared_data))
    assert code == 0
    base = job_stats(out)
    # granularity 8 needs distillation epochs that 8 stages divide (smoke trains 2)
    budget = tmp_path / "budget.yaml"
    budget.write_text("task_overrides: {synthetic_subdomains: {training: {distill: {epochs: 8}}}}\n")
    code, out = dry_run(tmp_path, "--configfile", str(REPO / "config" / "ablations.yaml"), str(budget),
                        data=str(shared_data))
    assert code == 0, out[-3000:]
    plus = job_stats(out)
    # smoke: 2 seeds, synthetic task only, SCD+AW enabled (cd is disabled there, so its axis adds nothing);
    # granularity 1, 2, 8 (4 = the method itself) and lambda 0, 0.5, 2 (1 = the method itself): 6 variants
    # (each distillation job also evaluates its student: rule evaluate is for the SFT models only)
    assert plus["distill"] - base["distill"] == 6 * 2 and plus["evaluate"] == base["evaluate"]
    assert plus["sft"] == base["sft"] and plus["teacher_outputs"] == base["teacher_outputs"]
    for name in ("scd+aw.n8", "scd+aw.lam0.5"):
        assert f"distill/{name}" in out
