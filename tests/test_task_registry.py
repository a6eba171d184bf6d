"""The task registry with the real data: every task loads with sound splits; groups, includes, prompts and the
truncation rule; malformed files give errors that name file, row and problem."""
import shutil
from collections import Counter
from pathlib import Path

import pytest

from scd.config import ConfigError, load_config, task_config
from scd.data import encode, fit_prompt
from scd.tokenizer import train_tokenizer
from tasks import SPLITS, TASK_DIR, TaskDataError, expand, get_task, list_tasks, task_groups
from tasks.generate_language_tasks import FAMILIES

JMED = ["crade", "jmmlu_med", "nrner", "rrtnm"]  # the JMED-LLM tasks the issue asks for


def test_every_issue_task_is_registered_with_its_groups():
    tasks_ = {t.name: t for t in list_tasks()}
    assert set(JMED) | {"pubmedqa", "ncbi_disease", "synthetic_subdomains"} <= set(tasks_)
    groups = task_groups()
    for group, members in groups.items():  # a group lists, in name order, exactly the tasks that declare it
        assert members == sorted(n for n, t in tasks_.items() if group in t.groups), group
    # the language families: one task per language file, all in the family's group (no count written down here)
    for folder, (_, prefix, *_) in FAMILIES.items():
        files = sorted(p for p in (TASK_DIR / folder).glob("*.yaml") if not p.name.startswith("_"))
        assert files and groups[prefix] == sorted(n for n in tasks_ if n.startswith(prefix + "_")), prefix
        assert len(groups[prefix]) == len(files), prefix
    assert set(JMED) <= set(groups["jmed_llm"])
    # the paper's benchmark is JMED-LLM and PubMedQA; biomed adds NCBI-disease; multilingual is both families
    assert sorted(groups["paper"]) == sorted(groups["jmed_llm"] + ["pubmedqa"])
    assert sorted(groups["biomed"]) == sorted(groups["paper"] + ["ncbi_disease"])
    assert sorted(groups["multilingual"]) == sorted(groups["sib200"] + groups["tweet_sentiment"])
    assert groups["synthetic"] == ["synthetic_subdomains"]
    assert expand(["paper", "pubmedqa", "synthetic"]) == groups["paper"] + ["synthetic_subdomains"]


def test_metrics_and_directions_are_declared():
    assert [m["key"] for m in get_task("crade").metric_specs] == ["accuracy", "kappa_linear"]
    assert get_task("crade").metric_specs[1]["params"] == {"weights": "linear", "outside": "sklearn"}
    assert [m["key"] for m in get_task("nrner").metric_specs] == ["exact_f1", "partial_f1"]
    assert [m["key"] for m in get_task("ncbi_disease").metric_specs] == ["f1", "precision", "recall", "f1_lenient",
                                                                         "precision_lenient"]
    assert [m["key"] for m in get_task("sib200_eng_latn").metric_specs] == ["accuracy", "macro_f1"]
    assert all(m["direction"] == "max" for t in list_tasks() for m in t.metric_specs)


@pytest.fixture(scope="module")
def loaded(shared_data):
    return {t.name: t.load(shared_data) for t in list_tasks() if t.data}


def test_every_task_loads_with_disjoint_labelled_splits(loaded):
    for name, splits in loaded.items():
        task = get_task(name)
        ids = [r["id"] for s in SPLITS for r in splits[s]]
        assert len(ids) == len(set(ids)), name
        for s in SPLITS:
            for r in splits[s]:
                if task.labels and "label" in r:
                    assert r["label"] in task.labels, (name, r["id"])
                assert r["answer"].strip(), (name, r["id"])


def test_official_split_sizes(loaded):
    assert [len(loaded["sib200_jpn_jpan"][s]) for s in SPLITS] == [701, 99, 204]
    assert [len(loaded["tweet_sentiment_german"][s]) for s in SPLITS] == [1839, 324, 870]
    assert [len(loaded["ncbi_disease"][s]) for s in SPLITS] == [5432, 923, 940]
    assert len(loaded["pubmedqa"]["test"]) == 500


def test_jmed_split_is_seeded_stratified_and_keeps_documents_whole(shared_data, loaded):
    crade = loaded["crade"]
    n = sum(len(crade[s]) for s in SPLITS)
    assert n == 1630
    # whole case reports go to one split, so row shares only approximate the fractions
    assert 0.17 < len(crade["test"]) / n < 0.23 and 0.08 < len(crade["validation"]) / n < 0.13
    assert all(set(Counter(r["label"] for r in crade[s])) == set("ABCD") for s in SPLITS)
    # one question per group (JMMLU-Med): every label keeps its share within a point or two
    jmmlu = loaded["jmmlu_med"]
    total = Counter(r["label"] for s in SPLITS for r in jmmlu[s])
    m = sum(total.values())
    for s in SPLITS:
        share = Counter(r["label"] for r in jmmlu[s])
        assert all(abs(share[k] / len(jmmlu[s]) - total[k] / m) < 0.02 for k in total), s
    # RRTNM asks T, N and M about one report: the three questions never straddle splits
    rrtnm = loaded["rrtnm"]
    doc = {s: {r["prompt"][slice(*r["truncate"]["span"])] for r in rrtnm[s]} for s in SPLITS}
    assert all(len(d) > 20 for d in doc["train"])
    assert not doc["train"] & doc["test"] and not doc["train"] & doc["validation"]
    assert get_task("crade").load(shared_data) == crade  # same seed, same split
    other = get_task("crade").load(shared_data, {"split_seed": 1})
    assert {r["id"] for r in other["test"]} != {r["id"] for r in crade["test"]}


def test_jmed_prompts_follow_the_benchmark(loaded):
    row = loaded["rrtnm"]["test"][0]
    assert row["prompt"].startswith("与えられた医学に関する質問と選択肢から")
    assert "\n選択肢:\nA. " in row["prompt"] and row["prompt"].endswith("回答:")
    assert row["answer"] == f" {row['label']}" and row["label"] in row["choices"]
    assert all(len(r["choices"]) <= 4 for r in loaded["rrtnm"]["train"] if r["tag"] == "M")  # M has fewer options
    ner = loaded["nrner"]["train"][0]
    assert ner["answer"] == " " + repr(ner["entities"]) and "リスト形式" in ner["prompt"]


def test_truncation_keeps_instruction_question_and_options(loaded):
    row = max(loaded["crade"]["train"], key=lambda r: len(r["prompt"]))
    tok = train_tokenizer("bpe", [r["prompt"] + r["answer"] for r in loaded["crade"]["train"][:300]], 1000)
    (enc,) = encode([row], tok, 96)
    text = tok.decode(enc.prompt_ids)
    assert len(enc.prompt_ids) + len(enc.answer_ids) <= 96
    a, b = row["truncate"]["span"]
    assert text.startswith(row["prompt"][:a][:10]) and text.endswith(row["prompt"][b:][-40:])
    # the document lost its end, the question before it stayed
    assert row["prompt"][:a].split("質問: ")[1][:15] in text


def test_fit_prompt_rule():
    head, body, tail = [1, 2], [3, 4, 5, 6], [7, 8]
    assert fit_prompt([head, body, tail], 6, "start") == [1, 2, 3, 4, 7, 8]
    assert fit_prompt([head, body, tail], 6, "end") == [1, 2, 5, 6, 7, 8]
    assert fit_prompt([head, body, tail], 3, "start") == [2, 7, 8]  # no room at all: drop from the start
    assert fit_prompt([[1, 2, 3, 4]], 2) == [3, 4]
    assert fit_prompt([head, body, tail], 20) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_group_selection_and_overrides():
    cfg = load_config("default", {"tasks": ["paper"]})
    assert cfg["tasks"] == task_groups()["paper"] and cfg["task_selection"] == ["paper"]
    crade = task_config(cfg, "crade")
    assert crade["tokenizer"]["vocab_size"] == 4000 and crade["training"]["teacher"]["epochs"] == 4
    assert task_config(cfg, "pubmedqa")["tokenizer"]["vocab_size"] == 2000  # not in jmed_llm
    own = load_config("default", {"tasks": ["paper"], "task_overrides": {"crade": {"tokenizer": {"vocab_size": 500}}}})
    assert task_config(own, "crade")["tokenizer"]["vocab_size"] == 500  # a task's own entry wins over its group's
    assert task_config(own, "rrtnm")["tokenizer"]["vocab_size"] == 4000


# -- malformed inputs: each names the file, the row/line and the problem ------------------------------------------

def _copy(shared_data: Path, tmp_path: Path, sub: str) -> Path:
    shutil.copytree(shared_data / sub, tmp_path / sub)
    for p in (tmp_path / sub).rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return tmp_path / sub


def test_jmed_missing_column(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path, "jmed_llm")
    path = folder / "all" / "JMMLU-Med.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(",answer\n", ",solution\n", 1), encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"JMMLU-Med.csv.*answer"):
        get_task("jmmlu_med").load(tmp_path)


def test_jmed_label_outside_the_declared_set(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path, "jmed_llm")
    path = folder / "all" / "CRADE.csv"
    text = path.read_text(encoding="utf-8")
    first_end = text.index(",A\n") + 3  # the first row's answer
    path.write_text(text[: first_end - 3] + ",Z\n" + text[first_end:], encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"CRADE.csv:\d+.*'Z'.*declared labels"):
        get_task("crade").load(tmp_path)


def test_rrtnm_answer_naming_an_empty_option(shared_data, tmp_path):
    import csv
    import io

    folder = _copy(shared_data, tmp_path, "jmed_llm")
    path = folder / "all" / "RRTNM.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    bad = next(i for i, r in enumerate(rows) if not r["optionE"])
    rows[bad]["answer"] = "E"
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"RRTNM.csv:\d+: the answer 'E' names an empty option"):
        get_task("rrtnm").load(tmp_path)


def test_nrner_answer_that_is_not_a_list(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path, "jmed_llm")
    path = folder / "all" / "NRNER.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("\"['疼痛',", "\"__import__('os'),['疼痛',", 1), encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"NRNER.csv:\d+: the answer .* not a Python list literal"):
        get_task("nrner").load(tmp_path)


def test_sib200_unknown_label_and_empty_split(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path, "sib200")
    train = folder / "eng_Latn" / "train.tsv"
    lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
    idx, _, text = lines[3].split("\t", 2)
    train.write_text("".join(lines[:3] + [f"{idx}\tcooking\t{text}"] + lines[4:]), encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"train.tsv:4.*'cooking'"):
        get_task("sib200_eng_latn").load(tmp_path)
    test = folder / "fra_Latn" / "test.tsv"
    test.write_text(test.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"test.tsv.*(empty|no rows)"):
        get_task("sib200_fra_latn").load(tmp_path)


def test_tweet_label_code_outside_the_declared_set_and_misaligned_files(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path, "tweet_sentiment_multilingual")
    labels = folder / "spanish" / "val_labels.txt"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(lines[:9] + ["3"] + lines[10:]) + "\n")
    with pytest.raises(TaskDataError, match=r"val_labels.txt:10: label '3'"):
        get_task("tweet_sentiment_spanish").load(tmp_path)
    labels.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(TaskDataError, match=r"val_text.txt has 324 lines but .*val_labels.txt has 323"):
        get_task("tweet_sentiment_spanish").load(tmp_path)


def test_ncbi_non_utf8_bytes(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path, "ncbi_disease")
    path = folder / "devel.tsv"
    data = path.read_bytes().split(b"\n")
    data[4] = b"caf\xe9\tO"
    path.write_bytes(b"\n".join(data))
    with pytest.raises(TaskDataError, match=r"devel.tsv.*line 5.*UTF-8|devel.tsv.*UTF-8.*line 5"):
        get_task("ncbi_disease").load(tmp_path)


def test_missing_data_names_the_fetch_command(tmp_path):
    with pytest.raises(TaskDataError, match=r"scd data fetch crade"):
        get_task("crade").load(tmp_path)


def test_unknown_group_in_config_is_named():
    with pytest.raises(ConfigError, match="Did you mean 'multilingual'"):
        load_config("default", {"tasks": ["multilingua"]})


def test_every_tasks_choices_are_answers_it_can_format():
    """Option scoring formats each choice with the task's answer template: a task whose labels are tags (NCBI-disease's
    BIO set) offers no choices, and every choice a task offers formats into an answer."""
    for task in list_tasks():
        for choice in task.choices():
            assert task.answer_for(choice).strip(), (task.name, choice)
    assert get_task("ncbi_disease").choices() == [] and get_task("pubmedqa").choices() == ["yes", "no", "maybe"]
