"""Evaluation over the registry's tasks: zero-shot rows, per-row choices, generation vs option scoring, and every
declared metric in the summary (on tiny prepared copies of real tasks)."""
import dataclasses
import json

import pytest
from conftest import prepare_tiny_jmed

from scd.config import stage_config
from scd.evaluate import evaluation_mode
from scd.settings import Evaluation
from scd.stages.evaluate import evaluate_model
from tasks import get_task


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, shared_data, monkeypatch_module):
    root = tmp_path_factory.mktemp("eval")
    monkeypatch_module.setenv("SCD_DATA_DIR", str(shared_data))
    return root, prepare_tiny_jmed(root, shared_data, max_test=30)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_zero_shot_scores_the_untrained_model_with_every_metric(prepared):
    root, cfg = prepared
    job = stage_config(cfg, "rrtnm", "zero_shot", "student")
    s = evaluate_model(job, None, "student_zero_shot", 0, root / "rrtnm", root / "zs.json")
    assert s["model"] == "student_zero_shot" and s["n"] == 30 and s["mode"] == "choices"
    # option scoring: lm-eval's acc (the headline) and acc_norm (per character) for every metric of the task
    assert set(s["scores"]) == {"accuracy", "kappa", "accuracy_norm", "kappa_norm"}
    assert s["score"] == s["scores"]["accuracy"] and -1.0 <= s["scores"]["kappa"] <= 1.0
    assert s["directions"] == dict.fromkeys(s["scores"], "max")
    assert s["sources"] == {"accuracy": "pred", "kappa": "pred", "accuracy_norm": "pred_norm",
                            "kappa_norm": "pred_norm"}
    records = [json.loads(line) for line in (root / "zs.samples.jsonl").read_text().splitlines()]
    assert s["scores"]["accuracy_norm"] == sum(r["pred_norm"] == r["gold"] for r in records) / len(records)
    rows = [json.loads(line) for line in (root / "rrtnm" / "test.jsonl").read_text().splitlines()]
    # option scoring picks among the row's own options: N and M questions offer fewer than five
    assert all(r["pred"] in row["choices"] for r, row in zip(records, rows))
    assert any(len(row["choices"]) < 5 for row in rows)
    # seeded: the same untrained model twice gives the same predictions; another seed another model
    again = evaluate_model(job, None, "student_zero_shot", 0, root / "rrtnm", root / "zs2.json")
    assert again["scores"] == s["scores"]


def test_generation_mode_parses_letters_and_lists(prepared):
    root, cfg = prepared
    gen = dataclasses.replace(stage_config(cfg, "rrtnm", "zero_shot", "teacher"),
                              evaluation=Evaluation(batch_size=16, mode="generate"))
    s = evaluate_model(gen, None, "teacher_zero_shot", 0, root / "rrtnm", root / "gen.json")
    assert s["mode"] == "generate"
    records = [json.loads(line) for line in (root / "gen.samples.jsonl").read_text().splitlines()]
    assert all(r["pred"] in ("", "A", "B", "C", "D", "E") for r in records)
    ner = evaluate_model(stage_config(cfg, "nrner", "zero_shot", "student"), None, "student_zero_shot", 0,
                         root / "nrner", root / "ner.json")
    assert set(ner["scores"]) == {"exact_f1", "partial_f1"} and ner["mode"] == "generate"
    records = [json.loads(line) for line in (root / "ner.samples.jsonl").read_text().splitlines()]
    assert all(isinstance(r["pred"], list) and isinstance(r["gold"], list) and r["gold"] for r in records)


def test_option_scoring_needs_choices():
    assert evaluation_mode(get_task("crade"), "task") == "choices"
    assert evaluation_mode(get_task("crade"), "generate") == "generate"
    with pytest.raises(ValueError, match="cannot be scored by option scoring"):
        evaluation_mode(get_task("nrner"), "choices")
