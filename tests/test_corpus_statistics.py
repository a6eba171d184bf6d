"""Corpus-level headline metrics in the leaderboard's statistics: the evaluation's per-sample records carry what a
corpus metric needs per item (NCBI-disease's entity counts), and the aggregate stage recomputes the metric on each
resample (entity-level F1, Cohen's kappa, JMED-LLM's per-item entity F1), checked against the tasks' own scorers."""
import json
import random
import types

import numpy as np
import pytest

import scd.evaluate as evaluation
import scd.stages.aggregate as aggregation
from scd.layout import Layout
from scd.stages.aggregate import RESAMPLED_METRICS, aggregate
from tasks import get_task, list_tasks
from tasks.metrics import cohen_kappa, entity_f1_exact, macro_f1

RATES = {"teacher_sft": 0.1, "student_sft": 0.7, "td": 0.6, "scd+aw": 0.2, "cd": 0.6}  # share of mentions missed
METHODS = ["td", "scd+aw", "cd"]


@pytest.fixture(scope="module")
def ncbi_rows(shared_data):
    return get_task("ncbi_disease").load(shared_data, {"max_train": 1, "max_validation": 1, "max_test": 200})["test"]


def answers(rows: list[dict], miss: float, seed: int) -> list[str]:
    """Model outputs (Python list literals): each gold mention kept unless missed, now and then a mention found
    nowhere in the sentence or a wrong one."""
    rng = random.Random(seed)
    out = []
    for r in rows:
        found = [m for m in r["entities"] if rng.random() >= miss]
        found += ["colon cancer"] if rng.random() < miss / 3 else []
        found += [r["tokens"][0]] if rng.random() < miss / 3 else []
        out.append(repr(found))
    return out


def stub_predict(monkeypatch, task, rows: list[dict], texts: list[str]) -> list[dict]:
    """`predict` with the model's generation replaced by `texts`: the records are the evaluation's own."""
    monkeypatch.setattr(evaluation, "encode", lambda rows, tokenizer, max_length: [None] * len(rows))
    monkeypatch.setattr(evaluation, "generate", lambda model, tok, enc, n, batch, device: list(texts))
    model = types.SimpleNamespace(eval=lambda: None)
    records = evaluation.predict(model, None, task, rows, task.max_length, 4, "cpu", with_nll=False)
    return [r | {"gold_nll": 0.5} for r in records]  # (the aggregate's TFS/SFS decomposition reads it)


def test_ncbi_records_carry_the_entity_counts_of_the_tasks_scores(monkeypatch, ncbi_rows):
    task = get_task("ncbi_disease")
    records = stub_predict(monkeypatch, task, ncbi_rows, answers(ncbi_rows, 0.4, 0))
    counts = [r["entities"] for r in records]
    assert all(set(c) == {"gold", "predicted", "correct", "absent"} for c in counts)
    tp, predicted, absent, gold = (sum(c[k] for c in counts) for k in ("correct", "predicted", "absent", "gold"))
    assert absent > 0 and 0 < tp < gold
    scores = evaluation.summarize(task, records, ncbi_rows)["scores"]
    assert scores["f1"] == pytest.approx(2 * tp / (predicted + absent + gold))
    assert scores["f1_lenient"] == pytest.approx(2 * tp / (predicted + gold))
    assert scores["recall"] == pytest.approx(tp / gold)
    # a task scored otherwise keeps its records as they were
    assert evaluation.item_statistics(get_task("pubmedqa"), ["yes"], [{}]) == [{}]


def write_run(layout: Layout, task: str, seed: int, model: str, summary: dict, records: list[dict]) -> tuple:
    summary_file, samples_file = layout.eval_summary(task, seed, model), layout.eval_samples(task, seed, model)
    summary_file.parent.mkdir(parents=True, exist_ok=True)
    summary_file.write_text(json.dumps(summary | {"task": task, "model": model, "seed": seed,
                                                  "run_id": f"run-{task}-{model}-{seed}"}))
    samples_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    return summary_file, samples_file


@pytest.fixture(scope="module")
def ncbi_results(tmp_path_factory, ncbi_rows):
    """A results directory of NCBI-disease evaluations over 3 seeds, records and summaries written by the
    evaluation's own code (generation stubbed); cd's outputs are td's (an identical pair)."""
    root = tmp_path_factory.mktemp("ncbi")
    layout, task = Layout(root), get_task("ncbi_disease")
    files = {"eval_files": [], "samples": []}
    with pytest.MonkeyPatch.context() as mp:
        for seed in range(3):
            for i, (model, miss) in enumerate(RATES.items()):
                texts = answers(ncbi_rows, miss, 100 * seed + (i if model != "cd" else list(RATES).index("td")))
                records = stub_predict(mp, task, ncbi_rows, texts)
                summary = evaluation.summarize(task, records, ncbi_rows)
                for key, f in zip(("eval_files", "samples"), write_run(layout, task.name, seed, model, summary,
                                                                       records)):
                    files[key].append(f)
    return root, files


def test_the_ncbi_leaderboard_has_comparisons_gap_closed_and_mde(ncbi_results):
    root, files = ncbi_results
    lb = aggregate(methods=METHODS, results_dir=str(root), resamples=300, **files)
    assert "ncbi_disease" not in lb["statistics"]["omitted"]
    comp, cells = lb["comparisons"]["ncbi_disease"], lb["cells"]
    better = comp["scd+aw"]["vs_td"]
    mean = {r: cells[r]["ncbi_disease"]["mean"] for r in RATES}
    assert better["diff"] == pytest.approx(mean["scd+aw"] - mean["td"])
    assert better["diff"] > 0.2 and better["ci95"][0] > 0 and better["p_holm"] < 0.05
    same = comp["cd"]["vs_td"]
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0] and same["p_holm"] == 1
    t, s, m = (cells[r]["ncbi_disease"]["mean"] for r in ("teacher_sft", "student_sft", "scd+aw"))
    gap = lb["gap_closed"]["ncbi_disease"]["scd+aw"]
    assert gap["value"] == pytest.approx((m - s) / (t - s)) and gap["meaningful"]
    assert gap["ci95"][0] < gap["value"] < gap["ci95"][1]
    assert 0 < lb["mde"]["ncbi_disease"]["value"] < better["diff"]
    assert lb["statistics"]["items"]["ncbi_disease"] == 200 and lb["statistics"]["seeds"]["ncbi_disease"] == 3


def test_the_bootstrap_recomputes_entity_f1_from_counts_not_a_mean_of_item_f1s(ncbi_results):
    """The point value of each row is the summaries' F1 (the stage checks each seed's); a mean over items of
    per-item F1 would differ."""
    root, files = ncbi_results
    lb = aggregate(methods=METHODS, results_dir=str(root), resamples=50, **files)
    rows = [json.loads(x) for x in Layout(root).eval_samples("ncbi_disease", 0, "scd+aw").read_text().splitlines()]
    per_item = [2 * e["correct"] / (e["predicted"] + e["absent"] + e["gold"]) if e["correct"] else
                float(e["predicted"] + e["absent"] + e["gold"] == 0) for e in (r["entities"] for r in rows)]
    summary = json.loads(Layout(root).eval_summary("ncbi_disease", 0, "scd+aw").read_text())
    assert abs(np.mean(per_item) - summary["score"]) > 1e-3  # (the stage checks each seed to 1e-9)
    assert lb["comparisons"]["ncbi_disease"]["scd+aw"]["vs_student_sft"]["diff"] == pytest.approx(
        lb["cells"]["scd+aw"]["ncbi_disease"]["mean"] - lb["cells"]["student_sft"]["ncbi_disease"]["mean"])


def test_records_without_entity_counts_are_left_out_with_the_reason_and_bad_counts_are_one_line(tmp_path,
                                                                                                ncbi_results):
    root, files = ncbi_results
    copy = tmp_path / "results"
    layout, old = Layout(copy), Layout(root)
    moved = {"eval_files": [], "samples": []}
    for seed in range(3):
        for model in RATES:
            summary = json.loads(old.eval_summary("ncbi_disease", seed, model).read_text())
            records = [json.loads(x) for x in old.eval_samples("ncbi_disease", seed, model).read_text().splitlines()]
            if (seed, model) == (1, "td"):
                records = [{k: v for k, v in r.items() if k != "entities"} for r in records]
            for key, f in zip(moved, write_run(layout, "ncbi_disease", seed, model, summary, records)):
                moved[key].append(f)
    lb = aggregate(methods=METHODS, results_dir=str(copy), resamples=20, **moved)
    stale = layout.eval_samples("ncbi_disease", 1, "td")
    assert lb["statistics"]["omitted"]["ncbi_disease"] == [
        f"{stale} carries no per-item entity counts (`entities`; per-sample records of older code): delete it and "
        "rerun the workflow, which re-evaluates that model"]
    assert "ncbi_disease" not in lb["comparisons"]
    records = [json.loads(x) for x in old.eval_samples("ncbi_disease", 1, "td").read_text().splitlines()]
    records[3]["entities"]["correct"] = -1
    stale.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ValueError, match=f"^{stale} holds malformed entity counts .*non-negative integers"):
        aggregate(methods=METHODS, results_dir=str(copy), resamples=20, **moved)


def label_runs(root, task: str, metric: str, golds: list, preds: dict, score) -> dict:
    """Per seed and row, records of these predictions and a summary scored by `score` (the task's metric)."""
    layout, files = Layout(root), {"eval_files": [], "samples": []}
    for seed, seed_preds in preds.items():
        for model, ps in seed_preds.items():
            records = [{"id": i, "subdomain": None, "pred": p, "gold": g, "correct": p == g, "gold_nll": 0.5}
                       for i, (p, g) in enumerate(zip(ps, golds))]
            summary = {"metric": metric, "score": score(ps, golds), "subdomains": {}}
            for key, f in zip(files, write_run(layout, task, seed, model, summary, records)):
                files[key].append(f)
    return files


def noisy_labels(rng, golds: list, right: float, wrong: list) -> list:
    return [g if rng.random() < right else rng.choice(wrong) for g in golds]


def test_a_kappa_headline_is_recomputed_on_each_resample(tmp_path):
    """A task (not in the registry) whose headline is Cohen's kappa: the default convention, an unparsed answer one
    more category; the point values are the summaries' kappas, the known difference found, the identical pair not."""
    rng = random.Random(7)
    labels = ["A", "B", "C", "D"]
    golds = [rng.choice(labels) for _ in range(300)]
    rates = {"teacher_sft": 0.9, "student_sft": 0.4, "td": 0.5, "scd+aw": 0.8}
    preds = {}
    for seed in range(2):
        preds[seed] = {m: noisy_labels(rng, golds, r, labels + [""]) for m, r in rates.items()}
        preds[seed]["cd"] = preds[seed]["td"]
    files = label_runs(tmp_path, "k", "cohen_kappa", golds, preds, lambda p, g: cohen_kappa(p, g))
    lb = aggregate(methods=METHODS, results_dir=str(tmp_path), resamples=300, **files)
    assert lb["statistics"]["omitted"] == {}
    want = {m: np.mean([cohen_kappa(preds[s][m], golds) for s in preds]) for m in rates}
    better = lb["comparisons"]["k"]["scd+aw"]["vs_td"]
    assert better["diff"] == pytest.approx(want["scd+aw"] - want["td"]) and better["ci95"][0] > 0
    assert lb["comparisons"]["k"]["cd"]["vs_td"]["p_holm"] == 1
    accuracy = np.mean([np.mean(np.array(preds[s]["scd+aw"]) == np.array(golds)) for s in preds])
    assert lb["cells"]["scd+aw"]["k"]["mean"] != pytest.approx(accuracy)


def test_jmed_llm_entity_f1_headline_is_the_mean_of_its_items(tmp_path):
    """NRNER's headline (JMED-LLM's entity F1) is by definition a mean over items of each item's F1: its statistics
    are those of the task's own per-item scores."""
    assert get_task("nrner").metric_specs[0]["name"] == "entity_f1_exact"
    rng = random.Random(8)
    pool = ["肺癌", "肝炎", "胃潰瘍", "糖尿病", "高血圧"]
    golds = [rng.sample(pool, rng.randint(1, 3)) for _ in range(200)]

    def guess(right: float) -> list:
        return [[e for e in g if rng.random() < right] + ([rng.choice(pool)] if rng.random() < 1 - right else [])
                for g in golds]
    preds = {seed: {m: guess(r) for m, r in {"teacher_sft": 0.9, "student_sft": 0.3, "td": 0.4,
                                              "scd+aw": 0.8}.items()} for seed in range(2)}
    for seed in preds:
        preds[seed]["cd"] = preds[seed]["td"]
    files = label_runs(tmp_path, "nrner", "exact_f1", golds, preds, entity_f1_exact)
    lb = aggregate(methods=METHODS, results_dir=str(tmp_path), resamples=300, **files)
    assert "nrner" not in lb["statistics"]["omitted"]
    want = np.mean([entity_f1_exact(preds[s]["scd+aw"], golds) - entity_f1_exact(preds[s]["td"], golds)
                    for s in preds])
    better = lb["comparisons"]["nrner"]["scd+aw"]["vs_td"]
    assert better["diff"] == pytest.approx(want) and better["ci95"][0] > 0
    assert lb["comparisons"]["nrner"]["cd"]["vs_td"]["p_holm"] == 1


def test_every_registered_headline_metric_is_resampled():
    for task in list_tasks():
        assert task.metric_specs[0]["name"] in RESAMPLED_METRICS, task.name


@pytest.mark.parametrize("task, metric, field, value, why", [
    ("k", "cohen_kappa", "pred", ["A"], "TypeError: the answer ['A'] is not a label string"),
    ("m", "macro_f1", "pred", {"A": 1}, "TypeError: the answer {'A': 1} is not a label string"),
    ("nrner", "exact_f1", "pred", "肺癌", "TypeError: entity_f1_exact prediction 0: expected a list of entity strings"),
    ("k", "cohen_kappa", "gold", "Z", None),
])
def test_an_edited_record_is_one_line_naming_its_file(tmp_path, monkeypatch, task, metric, field, value, why):
    if field == "gold":  # a task that declares its labels, as every registered one does
        monkeypatch.setattr(aggregation, "metric_spec", lambda task, key: {"name": metric, "params": {},
                                                                             "labels": list("ABCD")})
    rng = random.Random(9)
    if task in ("k", "m"):
        golds = [rng.choice("ABCD") for _ in range(30)]
        preds = {0: {m: noisy_labels(rng, golds, 0.6, list("ABCD")) for m in RATES}}
        score = cohen_kappa if task == "k" else macro_f1
    else:
        golds = [rng.sample(["肺癌", "肝炎", "胃潰瘍"], 2) for _ in range(30)]
        preds = {0: {m: [g[:1] for g in golds] for m in RATES}}
        score = entity_f1_exact
    files = label_runs(tmp_path, task, metric, golds, preds, score)
    edited = Layout(tmp_path).eval_samples(task, 0, "scd+aw")
    lines = edited.read_text().splitlines()
    lines[0] = json.dumps(json.loads(lines[0]) | {field: value})
    edited.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as e:
        aggregate(methods=METHODS, results_dir=str(tmp_path), resamples=20, **files)
    message = str(e.value)
    assert message.startswith(str(edited)) and "\n" not in message and "rerun the workflow" in message
    if why:
        assert f"holds a record that {metric if task != 'nrner' else 'entity_f1_exact'} cannot score ({why}" in message
    else:
        assert "holds the gold answer 'Z', which is not among the task's labels ['A', 'B', 'C', 'D']" in message
