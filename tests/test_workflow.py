"""Integration: the smoke profile's whole workflow in a temporary directory, then its report, leaderboard and
MLflow store; a second invocation must find nothing to do, and an interrupted run resumes with what is missing."""
import json
import os
import shutil

import pytest
from conftest import dry_run, snakemake

from scd.config import enabled_methods, load_config, teacher_cache_checkpoints
from scd.layout import Layout
from tasks import get_task, task_groups

pytestmark = pytest.mark.integration
SMOKE = load_config("smoke")
TASKS, SEEDS = tuple(SMOKE["tasks"]), tuple(SMOKE["seeds"])
METHODS = tuple(enabled_methods(SMOKE))
MODELS = ("teacher_zero_shot", "student_zero_shot", "teacher_sft", "student_sft", *METHODS)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, shared_data):
    work = tmp_path_factory.mktemp("smoke")
    code, out = snakemake(work, data=shared_data, timeout=1200)
    assert code == 0, out[-8000:]
    return work, work / "results" / "smoke"


def test_report_and_leaderboard(smoke_run):
    _, results = smoke_run
    lb = json.loads((results / "leaderboard.json").read_text())
    assert lb["rows"] == list(MODELS) and lb["tasks"] == sorted(TASKS)
    # every metric of a task, with its direction: NRNER's two set F1s, NCBI-disease's seqeval P/R/F1
    assert lb["metrics"]["nrner"] == {"exact_f1": "max", "partial_f1": "max"}
    assert set(lb["cells"]["td"]["ncbi_disease"]["scores"]) == {m["key"] for m in get_task("ncbi_disease").metric_specs}
    assert {"f1", "precision", "recall", "f1_lenient"} <= set(lb["cells"]["td"]["ncbi_disease"]["scores"])
    # the registry's groups with at least two of the run's tasks, restricted to them
    assert lb["groups"] and "biomed" in lb["groups"]
    for group, members in lb["groups"].items():
        assert len(members) >= 2 and members == [t for t in task_groups()[group] if t in TASKS], group
    for row in MODELS:
        for col in (*TASKS, "average"):
            c = lb["cells"][row][col]
            assert c["n"] == len(SEEDS) and 0.0 <= c["mean"] <= 1.0 and c["std"] >= 0.0
    assert set(lb["subdomains"]["synthetic_subdomains"]["td"]) == {"tfs", "sfs"}
    page = (results / "report.html").read_text()
    assert "teacher-SFT" in page and "student-SFT" in page and "<svg" in page and f"(n={len(SEEDS)})" in page
    assert "teacher (zero-shot)" in page and "partial_f1" in page and "Task groups" in page
    # SCD+AW's inspection data: a schedule per seed over the smoke trajectory, AW histograms per subdomain
    entry = lb["schedules"]["synthetic_subdomains"]["scd+aw"]
    assert [r["seed"] for r in entry["runs"]] == list(SEEDS)
    for r in entry["runs"]:  # each seed's own run: the smoke trajectory, and SCD's lowest score at each stage
        summary = json.loads((results / "synthetic_subdomains" / f"seed{r['seed']}" / "distill" / "scd+aw" /
                              "summary.json").read_text())
        assert r["schedule"] == summary["schedule"] and r["checkpoints"] == summary["checkpoints"] == ["ckpt-1", "best"]
        assert len(r["schedule"]) == 2
        assert r["schedule"] == [min(s, key=lambda c: s[c]["score"]) for s in summary["schedule_scores"]]
    assert {"tfs", "sfs"} <= set(entry["aw"][0]["hist"]) and 0 < entry["aw"][0]["mean"]["sfs"]["mean"] < 1
    assert "SCD+AW" in page and "<svg" in page.split("<h2>Adaptive weights")[1].split("<h2>")[0]


def test_mlflow_records_every_job_under_one_parent(smoke_run):
    from mlflow.tracking import MlflowClient

    _, results = smoke_run
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("scd-bench")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("scd.kind") == "workflow"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    jobs = [r for r in runs if r.data.tags.get("scd.stage")]
    assert all(r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id for r in jobs)
    assert all(r.info.status == "FINISHED" for r in jobs)
    stages = {}
    for r in jobs:
        stages.setdefault(r.data.tags["scd.stage"], []).append(r)
    n = len(TASKS) * len(SEEDS)
    assert {k: len(v) for k, v in stages.items()} == {
        "prepare": len(TASKS), "teacher_sft": n, "student_sft": n, "distill": n * len(METHODS),
        "evaluate": n * len(MODELS)}
    for r in stages["teacher_sft"] + stages["distill"]:
        tags = r.data.tags
        assert tags["scd.task"] in TASKS and int(tags["scd.seed"]) in SEEDS and tags["scd.profile"] == "smoke"
        history = client.get_metric_history(r.info.run_id, "train/loss")
        assert len(history) >= 2 and all(0 < m.value < 20 for m in history)
        assert "env.version.torch" in r.data.params and r.data.params["env.torch_threads"] == "1"
    for r in stages["evaluate"]:
        headline = get_task(r.data.tags["scd.task"]).metric_specs[0]["key"]
        assert 0.0 <= r.data.metrics[f"test/{headline}"] <= 1.0
        assert r.data.tags["scd.method"] in MODELS


def test_teacher_output_caches_are_deleted_once_read_and_the_costs_are_on_the_leaderboard(smoke_run):
    _, results = smoke_run
    L = Layout(results)
    for task in TASKS:
        for seed in SEEDS:
            assert L.teacher_outputs_manifest(task, seed).is_file()
            assert not list(L.teacher_outputs(task, seed).glob("*.safetensors"))  # temporary outputs
    compute = json.loads(L.leaderboard().read_text())["compute"]
    for method in METHODS:
        assert set(compute["total"][method]) == {"train_seconds", "teacher_seconds", "peak_rss_bytes", "disk_bytes"}
    assert set(compute["teacher_outputs"]) == set(TASKS)
    assert compute["total"]["td"]["teacher_seconds"] == 0  # TD reads the cached outputs only
    assert compute["total"]["teacher_sft"]["disk_bytes"] > compute["total"]["student_sft"]["disk_bytes"]  # trajectory


def test_second_invocation_recomputes_nothing(smoke_run, shared_data):
    work, _ = smoke_run
    code, out = dry_run(work, data=shared_data)
    assert code == 0 and "Nothing to be done" in out, out[-2000:]


def test_interrupted_run_resumes_with_the_unfinished_jobs_only(smoke_run, shared_data):
    # The state a run killed half-way leaves: one distillation and everything after it not yet done.
    work, results = smoke_run
    shutil.rmtree(results / "pubmedqa" / "seed1" / "distill" / "td")
    for f in ("pubmedqa/seed1/eval/td.json", "pubmedqa/seed1/eval/td.samples.jsonl", "leaderboard.json",
              "report.html"):
        (results / f).unlink()
    # nor deleted the seed's teacher-output cache, a temporary output its last distillation would have read
    manifest = Layout(results).teacher_outputs_manifest("pubmedqa", 1)
    for name in teacher_cache_checkpoints(SMOKE, "pubmedqa"):
        cache = manifest.parent / f"{name}.safetensors"
        cache.write_bytes(b"")
        os.utime(cache, (manifest.stat().st_mtime,) * 2)
    code, out = dry_run(work, "--quiet", "rules", data=shared_data)
    assert code == 0
    counts = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    # the distillation job evaluates its student too (one job start-up less)
    assert counts.get("distill") == 1 and "evaluate" not in counts and counts.get("report") == 1, out[-3000:]
    assert "sft" not in counts and "prepare" not in counts
