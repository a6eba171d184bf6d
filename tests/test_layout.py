"""The results layout (scd/layout.py): the paths it names, and the workflow's aggregate rule declaring every file the
aggregation reads."""
import re
from pathlib import Path

from conftest import dry_run

from scd.layout import Layout

TASKS, SEEDS = ("synthetic_subdomains", "pubmedqa", "nrner", "ncbi_disease"), (0, 1)
METHODS = ("td", "scd+aw")  # the smoke profile's enabled methods


def test_paths_patterns_and_globs():
    L = Layout("results/x")
    assert L.seed_dir("t", 3) == Path("results/x/t/seed3")
    assert L.eval_summary("t", 0, "td") == Path("results/x/t/seed0/eval/td.json")
    assert L.eval_samples("t", 0, "td") == Path("results/x/t/seed0/eval/td.samples.jsonl")
    assert L.distill_summary("t", 0, "scd+aw") == Path("results/x/t/seed0/distill/scd+aw/summary.json")
    assert L.teacher_outputs_manifest("t", 1) == Path("results/x/t/seed1/teacher_outputs/manifest.json")
    assert L.sft_log("t", 1, "teacher") == Path("results/x/logs/t/seed1/teacher_sft.log")
    assert L.mlflow_db() == Path("results/x/mlflow.db") and L.leaderboard() == Path("results/x/leaderboard.json")
    # placeholders make Snakemake's patterns; `*` under Layout(".") a glob relative to the results directory
    assert str(L.eval_summary("{task}", "{seed}", "{model}")) == "results/x/{task}/seed{seed}/eval/{model}.json"
    assert Layout(".").distill_summary("*", "*", "*").as_posix() == "*/seed*/distill/*/summary.json"


def test_aggregate_rule_declares_the_summaries_and_manifests_it_reads(tmp_path, shared_data):
    code, out = dry_run(tmp_path, data=str(shared_data))
    assert code == 0, out[-3000:]
    found = re.search(r"^rule aggregate:\n    input: (.*)$", out, re.M)
    assert found, out[-3000:]
    inputs = set(found.group(1).split(", "))
    L = Layout("results/smoke")
    want = {str(L.distill_summary(t, s, m)) for t in TASKS for s in SEEDS for m in METHODS}
    want |= {str(L.teacher_outputs_manifest(t, s)) for t in TASKS for s in SEEDS}
    assert want <= inputs, sorted(want - inputs)
    # ... each written by a job of the plan (the distillation or teacher-outputs job declares it as an output)
    outputs = {f for line in re.findall(r"^    output: (.*)$", out, re.M) for f in line.split(", ")}
    assert want <= outputs, sorted(want - outputs)
