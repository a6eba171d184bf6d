"""Evaluation over the registry's tasks: zero-shot rows, per-row choices, generation vs option scoring, and every
declared metric in the summary (on tiny prepared copies of real tasks)."""
import ast
import dataclasses
import json
from pathlib import Path

import pytest
from conftest import prepare_tiny_jmed
from sklearn.metrics import accuracy_score, cohen_kappa_score

import scd.evaluate
from report.render import metrics_table
from scd.config import load_config, stage_config
from scd.evaluate import evaluation_mode, evaluation_protocol
from scd.settings import Evaluation
from scd.stages.aggregate import aggregate
from scd.stages.evaluate import evaluate_model
from tasks import get_task, task_groups


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


# --- JMED-LLM's own protocol ----------------------------------------------------------------------------------------

def test_benchmark_mode_is_jmed_llms_protocol_and_the_paper_profiles_default_for_its_tasks():
    jmed = task_groups()["jmed_llm"]
    paper = load_config("paper")
    for name in jmed:
        task = get_task(name)
        protocol = evaluation_protocol(task, "benchmark")
        assert protocol["mode"] == "generate" and protocol["max_new_tokens"] == 512, name
        assert protocol["parser"] == ("letter" if task.choices() else "python_list"), name
        assert stage_config(paper, name, "evaluate", "td").evaluation.mode == "benchmark", name
        assert evaluation_protocol(task)["mode"] == task.evaluation["mode"]  # the suite's default is unchanged
    # a task without a protocol of its own keeps its mode under `benchmark`; the paper profile leaves it alone
    others = [t for t in task_groups()["paper"] if t not in jmed]
    assert others and all(evaluation_protocol(get_task(t), "benchmark")["mode"] == get_task(t).evaluation["mode"]
                          and stage_config(paper, t, "evaluate", "td").evaluation.mode == "task" for t in others)
    with pytest.raises(ValueError, match="unknown evaluation mode 'bench'.*evaluation.mode"):
        evaluation_protocol(get_task("crade"), "bench")


def upstream_letter(text: str) -> str:
    """JMED-LLM's get_first_uppercase_alphabet (src/utils.py), as its README and our task files describe it."""
    return next((c for c in text if c in "ABCDEF"), "None")


def upstream_list(text: str) -> list:
    """JMED-LLM's get_list_from_string, on fixtures where its eval and a literal parse agree."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return value if isinstance(value, list) else []


def upstream_exact_f1(golds: list[list[str]], preds: list[list[str]]) -> float:
    """JMED-LLM's exact_f1_score: per sample, set precision and recall, F1, averaged."""
    total = 0.0
    for gold, pred in zip(golds, preds):
        hit = set(gold) & set(pred)
        recall, precision = len(hit) / len(set(gold)), len(hit) / len(set(pred)) if pred else 0
        total += 2 * recall * precision / (recall + precision) if recall + precision else 0
    return total / len(golds)


LETTER_TEXTS = ["B", " C", "Answer: D", "回答：E", "わからない", "F です", "b", "選択肢Cが正しい", "A", "  D\n", "",
                "EかA", "C. 胸膜浸潤"]
LIST_TEXTS = ["['発熱']", "[]", "['発熱', '咳'", "発熱です", "  ['咳']", "['発熱']\n以上", "[1, '嘔吐']", "('発熱',)"]


@pytest.fixture
def fixed_generations(monkeypatch):
    """The model's generations replaced by fixture texts, in row order; the budget asked for is recorded."""
    asked = []

    def fake(model, tokenizer, encoded, max_new_tokens, batch_size, device):
        asked.append(max_new_tokens)
        texts = LETTER_TEXTS if fake.texts == "letters" else LIST_TEXTS
        return [texts[i % len(texts)] for i in range(len(encoded))]

    monkeypatch.setattr(scd.evaluate, "generate", fake)
    fake.asked = asked
    return fake


def _benchmark_run(prepared, task: str, out: str):
    """The untrained student's zero-shot evaluation of `task` under `evaluation.mode: benchmark`: (data root, job,
    summary, test rows)."""
    root, cfg = prepared
    job = dataclasses.replace(stage_config(cfg, task, "zero_shot", "student"),
                              evaluation=Evaluation(batch_size=16, mode="benchmark"))
    s = evaluate_model(job, None, "student_zero_shot", 0, root / task, root / out)
    return root, job, s, [json.loads(line) for line in (root / task / "test.jsonl").read_text().splitlines()]


def test_jmed_llm_protocol_scores_choice_tasks_as_the_benchmarks_scorer(prepared, fixed_generations):
    fixed_generations.texts = "letters"
    root, job, s, rows = _benchmark_run(prepared, "rrtnm", "bench.json")
    assert fixed_generations.asked == [512]  # its budget
    golds = [r["label"] for r in rows]
    upstream = [upstream_letter(LETTER_TEXTS[i % len(LETTER_TEXTS)]) for i in range(len(rows))]
    assert {"None", "E", "F"} <= set(upstream) and 0 < accuracy_score(golds, upstream) < 1  # the fixture's reach
    # the headline metrics are the protocol's, with the numbers JMED-LLM's scorer gives
    assert s["protocol"] == "benchmark" and s["mode"] == "generate" and s["metric"] == "accuracy"
    assert s["score"] == s["scores"]["accuracy"] == pytest.approx(accuracy_score(golds, upstream))
    assert s["scores"]["kappa"] == pytest.approx(cohen_kappa_score(golds, upstream))
    # option scoring rides along as a second, named protocol: the numbers of an option-scoring run of the same model
    assert set(s["scores"]) == {f"{k}{x}" for k in ("accuracy", "kappa") for x in ("", "_options", "_options_norm")}
    assert s["sources"]["accuracy_options"] == "pred_options"
    choices = evaluate_model(dataclasses.replace(job, evaluation=Evaluation(batch_size=16, mode="choices")), None,
                             "student_zero_shot", 0, root / "rrtnm", root / "choices.json")
    for k in ("accuracy", "kappa"):
        assert s["scores"][f"{k}_options"] == pytest.approx(choices["scores"][k])
        assert s["scores"][f"{k}_options_norm"] == pytest.approx(choices["scores"][f"{k}_norm"])
    # both reach the leaderboard (the protocol's accuracy its headline) and the report's table of every metric
    lb = aggregate([root / "bench.json"], [], results_dir=str(root))
    assert lb["metric"]["rrtnm"] == "accuracy" and set(lb["metrics"]["rrtnm"]) == set(s["scores"])
    assert {"accuracy_options", "accuracy_options_norm"} <= set(lb["cells"]["student_zero_shot"]["rrtnm"]["scores"])
    assert "accuracy_options_norm" in metrics_table(lb, "rrtnm")


def test_jmed_llm_protocol_reads_nrner_lists_as_the_benchmarks_scorer(prepared, fixed_generations):
    fixed_generations.texts = "lists"
    root, _, s, rows = _benchmark_run(prepared, "nrner", "bench_ner.json")
    assert fixed_generations.asked == [512] and s["parser"] == "python_list"
    upstream = [upstream_list(LIST_TEXTS[i % len(LIST_TEXTS)]) for i in range(len(rows))]
    assert s["scores"]["exact_f1"] == pytest.approx(upstream_exact_f1([r["entities"] for r in rows],
                                                                      [[e for e in p if isinstance(e, str)]
                                                                       for p in upstream]))
    records = [json.loads(line) for line in (root / "bench_ner.samples.jsonl").read_text().splitlines()]
    assert records[2]["pred"] == [] and records[5]["pred"] == []  # a cut-off list, text after it: nothing
    assert set(s["scores"]) == {"exact_f1", "partial_f1"}  # no choices: no option scoring


def test_the_leaderboard_refuses_evaluations_of_one_task_with_different_metrics(tmp_path):
    def summary(seed: int, scores: dict) -> Path:
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps({"task": "rrtnm", "model": "student_zero_shot", "seed": seed, "metric": "accuracy",
                                    "score": scores["accuracy"], "scores": scores, "subdomains": {},
                                    "directions": dict.fromkeys(scores, "max"), "run_id": f"r{seed}"}))
        return path

    new = summary(0, {"accuracy": 0.5, "accuracy_norm": 0.25})
    old = summary(1, {"accuracy": 0.75})  # written before option scoring reported accuracy_norm
    with pytest.raises(ValueError, match=r"seed1\.json scores task 'rrtnm' by accuracy, but .*seed0\.json by "
                                         r"accuracy, accuracy_norm: .*delete the stale one and rerun the workflow"):
        aggregate([new, old], [], results_dir=str(tmp_path))
    both = aggregate([new, summary(1, {"accuracy": 0.75, "accuracy_norm": 0.5})], [], results_dir=str(tmp_path))
    assert both["cells"]["student_zero_shot"]["rrtnm"]["scores"]["accuracy_norm"]["mean"] == pytest.approx(0.375)
