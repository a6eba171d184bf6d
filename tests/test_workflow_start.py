"""The workflow refuses bad input at start (a dry run), with the message the user needs."""
import re

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


def test_shared_teacher_plans_one_teacher_per_task_for_every_seed(tmp_path, shared_data):
    code, out = dry_run(tmp_path, data=str(shared_data))
    assert code == 0, out[-3000:]
    own = job_stats(out)
    code, out = dry_run(tmp_path, "--printshellcmds", "--config", "shared_teacher=true", data=str(shared_data))
    assert code == 0, out[-3000:]
    shared = job_stats(out)
    seeds = [int(s) for s in re.findall(r"--seed (\d+)", out)]
    first, n_seeds = min(seeds), len(set(seeds))
    n_tasks = own["teacher_outputs"] // n_seeds
    assert n_seeds > 1 and n_tasks > 0
    # one teacher fine-tuning and one teacher-output pass per task; the students stay per seed
    assert shared["teacher_outputs"] == n_tasks
    assert shared["sft"] == own["sft"] - n_tasks * (n_seeds - 1)
    assert shared["distill"] == own["distill"]
    # the teacher's two rows (fine-tuned, zero-shot) of every other seed are its first seed's evaluations, reused
    assert shared["shared_teacher_evaluation"] == 2 * n_tasks * (n_seeds - 1)
    assert shared["evaluate"] + shared["zero_shot"] + shared["shared_teacher_evaluation"] == \
        own["evaluate"] + own["zero_shot"]
    distills = re.findall(r"scd distill .*?--seed (\d+) .*?--teacher (\S+) .*?--teacher-outputs (\S+)", out)
    assert len(distills) == own["distill"] and {s for s, _, _ in distills} == {str(s) for s in set(seeds)}
    for _, teacher, cache in distills:
        assert f"/seed{first}/teacher" in teacher and f"/seed{first}/teacher_outputs" in cache
