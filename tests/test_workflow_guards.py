"""Guards of the workflow against misuse: a profile that must survive other --config keys, paths with spaces,
results missing from the leaderboard."""
import os
import re

import pytest
from conftest import REPO, dry_run, job_stats, snakemake

from scd.config import enabled_methods, enabled_tasks, load_config, stage_config
from scd.layout import Layout


def _start_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("scd-bench: profile ")]
    assert len(lines) == 1, out[-3000:]
    return lines[0]


# --- the workflow profile survives other --config keys ------------------------------------------------------------

def test_smoke_profile_survives_other_config_keys(tmp_path, shared_data):
    code, out = dry_run(tmp_path, "--config", "seeds=[0]", data=str(shared_data))
    assert code == 0, out[-3000:]
    cfg = load_config("smoke", {"seeds": [0]})
    tasks, methods = enabled_tasks(cfg), enabled_methods(cfg)
    line = _start_line(out)
    assert line.startswith("scd-bench: profile smoke (config/smoke.yaml; workflow profile profiles/smoke)")
    assert f"methods [{', '.join(methods)}], seeds [0]," in line and line.endswith("results/smoke")
    stats = job_stats(out)
    assert stats["prepare"] == len(tasks) and stats["sft"] == 2 * len(tasks)
    assert stats["distill"] == len(tasks) * len(methods)


def test_profile_config_entries_survive_and_command_line_wins(tmp_path, shared_data):
    # paper-lora sets profile, results_dir and the models' LoRA in its `config:` entries
    code, out = dry_run(tmp_path, "--config", "seeds=[0]", profile="paper-lora", data=str(shared_data))
    assert code == 0, out[-3000:]
    line = _start_line(out)
    assert "profile paper (config/paper.yaml; workflow profile profiles/paper-lora)" in line
    assert line.endswith("results/paper_lora")
    code, out = dry_run(tmp_path, "--config", "profile=default", "seeds=[0]", data=str(shared_data))
    assert code == 0 and "scd-bench: profile default (config/default.yaml" in out


def test_profile_configfile_survives_a_command_line_configfile(tmp_path, shared_data):
    # profiles/ablations names config/ablations.yaml as its configfile; another --configfile must not drop it
    extra = tmp_path / "extra.yaml"
    extra.write_text("seeds: [0]\n")
    code, out = dry_run(tmp_path, "--configfile", str(extra), profile="ablations", data=str(shared_data))
    assert code == 0, out[-3000:]
    assert "scd-bench: profile default (config/default.yaml; workflow profile profiles/ablations)" in out
    assert re.search(r"distill/scd\+aw\.n8", out)



# --- a malformed JSON-lines file: named with its line, and the remedy that rewrites it ------------------------------

def test_a_malformed_prepared_split_says_prepare_again(tmp_path):
    from scd.data import read_jsonl

    split = tmp_path / "train.jsonl"
    split.write_text('{"id": 0}\n{"id": 1, "pro')
    with pytest.raises(ValueError, match=r"train.jsonl:2: malformed JSON line \(.*\): re-run `scd prepare`"):
        read_jsonl(split)
    with pytest.raises(ValueError, match=r"train.jsonl:2: malformed JSON line \(.*\): do this$"):
        read_jsonl(split, remedy="do this")


# --- paths with spaces: every path in every rule's shell command is quoted -----------------------------------------

def test_every_path_placeholder_in_the_snakefile_is_quoted():
    text = (REPO / "Snakefile").read_text()
    shells = re.findall(r"^    shell:\n((?:        .*\n)+)", text, re.M)
    assert len(shells) == text.count("\n    shell:\n") >= 8
    placeholders = [p for s in shells for p in re.findall(r"\{([^{}]+)\}", s)]
    assert any(p.startswith("input") for p in placeholders)
    unquoted = [p for p in placeholders if not p.startswith("wildcards.") and not p.endswith(":q")]
    assert not unquoted, f"quote them ({{x:q}}): {unquoted}"


# --- a results directory without Snakemake's metadata: an enabled method or a deleted result is planned ------------

def _copied_results(root, keep_teacher_outputs=False):
    """A finished one-task, one-seed, `td` results directory as the layout has it, without .snakemake beside it
    (as after a copy): every file a run leaves, in the order the jobs write them. The teacher-output cache is a
    temporary output (deleted once the distillations have read it), but the manifest beside it stays;
    `keep_teacher_outputs`: the cache too, as `snakemake --notemp` leaves it."""
    L, stamp = Layout(root), [1_600_000_000]

    def make(path, directory=False):
        path.mkdir(parents=True, exist_ok=True) if directory else (path.parent.mkdir(parents=True, exist_ok=True),
                                                                    path.write_text("{}\n"))
        stamp[0] += 10
        os.utime(path, (stamp[0], stamp[0]))

    task = "synthetic_subdomains"
    make(L.prepared_manifest(task)), make(L.prepared(task), directory=True)
    for role in ("teacher", "student"):
        make(L.sft(task, 0, role), directory=True)
        make(L.eval_summary(task, 0, f"{role}_zero_shot")), make(L.eval_samples(task, 0, f"{role}_zero_shot"))
        make(L.eval_summary(task, 0, f"{role}_sft")), make(L.eval_samples(task, 0, f"{role}_sft"))
    make(L.teacher_outputs_manifest(task, 0)), make(L.teacher_outputs(task, 0), directory=True)
    n = stage_config(load_config("smoke"), task, "sft", "teacher").save_checkpoints  # dry_run's profile
    for name in [f"ckpt-{k}" for k in range(1, n)] + ["best"] if keep_teacher_outputs else []:
        make(L.teacher_outputs(task, 0) / f"{name}.safetensors")
    make(L.distill_summary(task, 0, "td")), make(L.distill(task, 0, "td"), directory=True)
    make(L.eval_summary(task, 0, "td")), make(L.eval_samples(task, 0, "td"))
    make(L.leaderboard()), make(L.report())
    return L


def test_a_copied_results_directory_plans_an_enabled_method_and_a_deleted_result(tmp_path):
    results = tmp_path / "copied" / "results"
    L = _copied_results(results)
    base = ["--config", "tasks=[synthetic_subdomains]", "seeds=[0]", f"results_dir={results}"]
    code, out = dry_run(tmp_path, *base, "run_methods=[td]")
    assert code == 0 and "Nothing to be done" in out, out[-3000:]
    # the teacher-output cache is gone (temporary): a method enabled now needs it again, and the seed's other
    # distillations read the regenerated cache
    code, out = dry_run(tmp_path, *base, "run_methods=[td,scd+aw]")
    assert code == 0, out[-3000:]
    assert job_stats(out) == {"teacher_outputs": 1, "distill": 2, "aggregate": 1, "report": 1, "all": 1}
    assert "distill/scd+aw" in out
    L.distill_summary("synthetic_subdomains", 0, "td").unlink()  # its distillation again: with the cache again
    code, out = dry_run(tmp_path, *base, "run_methods=[td]")
    assert code == 0 and job_stats(out) == {"teacher_outputs": 1, "distill": 1, "aggregate": 1, "report": 1,
                                            "all": 1}, out[-3000:]


def test_a_kept_teacher_output_cache_lets_an_enabled_method_run_alone(tmp_path):
    results = tmp_path / "copied" / "results"
    _copied_results(results, keep_teacher_outputs=True)
    base = ["--config", "tasks=[synthetic_subdomains]", "seeds=[0]", f"results_dir={results}"]
    code, out = dry_run(tmp_path, *base, "run_methods=[td]")
    assert code == 0 and "Nothing to be done" in out, out[-3000:]
    code, out = dry_run(tmp_path, *base, "run_methods=[td,scd+aw]", "--notemp")
    assert code == 0 and job_stats(out) == {"distill": 1, "aggregate": 1, "report": 1, "all": 1}, out[-3000:]


def test_a_results_directory_with_a_space_works_and_nothing_is_written_beside_it(tmp_path):
    results = tmp_path / "with space" / "results"
    beside = tmp_path / "with"  # what an unquoted `> {log}` would overwrite
    beside.write_text("precious\n")
    L = Layout(results)
    args = ["--config", "tasks=[synthetic_subdomains]", "seeds=[0]", "run_methods=[td]", f"results_dir={results}"]
    code, out = dry_run(tmp_path, *args, "--printshellcmds")
    assert code == 0 and f"--out '{L.prepared('synthetic_subdomains')}' > '{L.prepare_log('synthetic_subdomains')}'" \
        in out, out[-3000:]
    code, out = snakemake(tmp_path, str(L.prepared("synthetic_subdomains")), "--cores", "1", *args)
    assert code == 0, out[-3000:]
    assert (L.prepared("synthetic_subdomains") / "train.jsonl").is_file() and L.mlflow_db().is_file()
    assert L.prepare_log("synthetic_subdomains").is_file()
    assert beside.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snakemake", "with", "with space"]
    assert sorted(p.name for p in results.iterdir()) == ["logs", "mlartifacts", "mlflow.db", "runs",
                                                         "synthetic_subdomains"]


def test_tasks_with_different_trajectories_keep_their_teacher_output_caches(tmp_path, shared_data):
    """A temporary output must be named file by file; when the tasks save different numbers of teacher checkpoints
    the caches are directories, kept (planned, not an error)."""
    results = tmp_path / "results"
    L = Layout(results)
    override = 'task_overrides={"pubmedqa": {"training": {"teacher": {"save_checkpoints": 1}}}}'
    code, out = dry_run(tmp_path, "--config", "tasks=[synthetic_subdomains,pubmedqa]", "seeds=[0]",
                        "run_methods=[td]", f"results_dir={results}", override, data=shared_data)
    assert code == 0, out[-3000:]
    outputs = re.findall(r"^rule teacher_outputs:\n(?:    .*\n)*?    output: (.*)$", out, re.M)
    assert outputs and all(o.split(", ")[0] in (str(L.teacher_outputs(t, 0)) for t in ("synthetic_subdomains",
                                                                                          "pubmedqa"))
                           for o in outputs), out[-3000:]
