"""Task registry, the synthetic generator's structure, the PubMedQA loader, parsers and metrics."""
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from scd.registry import UnknownNameError
from tasks import TaskDataError, get_task, list_tasks
from tasks.metrics import exact_match, macro_f1
from tasks.synthetic.generator import parity

SMALL = {"n_tfs_train": 300, "n_tfs_test": 100, "n_sfs_train": 200, "n_sfs_test": 100, "n_val": 100}


def test_registry_lists_tasks_and_suggests_close_names():
    assert {"synthetic_subdomains", "pubmedqa"} <= {t.name for t in list_tasks()}
    with pytest.raises(UnknownNameError, match="Did you mean 'pubmedqa'"):
        get_task("pubmedq")


def test_unknown_task_option_is_named():
    with pytest.raises(ValueError, match="no option 'n_tfs_trian'.*Did you mean 'n_tfs_train'"):
        get_task("synthetic_subdomains").check_options({"n_tfs_trian": 3})


def test_synthetic_is_deterministic_per_seed_and_varies_across_seeds():
    task = get_task("synthetic_subdomains")
    a = task.load(Path("."), SMALL)
    b = task.load(Path("."), SMALL)
    c = task.load(Path("."), {**SMALL, "data_seed": 99})
    assert a == b
    assert a["train"] != c["train"]


def test_synthetic_structure():
    opts = {**SMALL, "sfs_noise": 0.3, "sfs_copies": 2}
    s = get_task("synthetic_subdomains").load(Path("."), opts)
    train, test = s["train"], s["test"]
    tfs = [r for r in train if r["subdomain"] == "tfs"]
    sfs = [r for r in train if r["subdomain"] == "sfs"]
    assert len(tfs) == 300 and len(sfs) == 400
    # TFS answers are the 4-digit product, least significant digit first
    for r in tfs + [r for r in test if r["subdomain"] == "tfs"]:
        a, b = int(r["prompt"][1:4]), int(r["prompt"][5])
        assert r["answer"] == f"{a * b:04d}"[::-1]
    # SFS: each input twice with the same (possibly flipped) label; about 30% flipped
    by_input = {}
    for r in sfs:
        by_input.setdefault(r["prompt"], set()).add(r["answer"])
    assert len(by_input) == 200 and all(len(v) == 1 for v in by_input.values())
    flipped = sum(v != {parity(p[1:9])} for p, v in by_input.items())
    assert 0.2 < flipped / 200 < 0.4
    # test labels are clean, and test inputs are unseen in training
    for r in test:
        if r["subdomain"] == "sfs":
            assert r["answer"] == parity(r["prompt"][1:9])
    assert not {r["prompt"] for r in test} & {r["prompt"] for r in train}
    assert Counter(r["subdomain"] for r in test) == {"tfs": 100, "sfs": 100}


def test_per_copy_flips_disagree_sometimes():
    s = get_task("synthetic_subdomains").load(Path("."), {**SMALL, "flip_per_copy": True, "sfs_noise": 0.5})
    labels = {}
    for r in s["train"]:
        if r["subdomain"] == "sfs":
            labels.setdefault(r["prompt"], set()).add(r["answer"])
    assert any(len(v) == 2 for v in labels.values())


def test_pubmedqa_splits(shared_data):
    s = get_task("pubmedqa").load(shared_data)
    assert len(s["test"]) == 500
    assert len(s["train"]) + len(s["validation"]) == 500
    assert not {r["id"] for r in s["test"]} & {r["id"] for r in s["train"] + s["validation"]}
    assert Counter(r["label"] for r in s["test"]) == {"yes": 276, "no": 169, "maybe": 55}
    assert all(r["prompt"].endswith("Answer:") and "Question:" in r["prompt"] for r in s["test"])


def test_pubmedqa_missing_data_says_where_and_what(tmp_path):
    with pytest.raises(TaskDataError) as e:
        get_task("pubmedqa").load(tmp_path)
    msg = str(e.value)
    assert str(tmp_path.resolve()) in msg and "ori_pqal.json" in msg and "github.com/pubmedqa" in msg
    assert "SCD_DATA_DIR" in msg


def test_pubmedqa_malformed_row_is_named(tmp_path, shared_data):
    folder = tmp_path / "pubmedqa"
    folder.mkdir()
    items = json.loads((shared_data / "pubmedqa" / "ori_pqal.json").read_text())
    bad = next(iter(items))
    items[bad]["final_decision"] = "perhaps"
    (folder / "ori_pqal.json").write_text(json.dumps(items))
    shutil.copy(shared_data / "pubmedqa" / "test_ground_truth.json", folder)
    with pytest.raises(ValueError, match=f"entry {bad} has label 'perhaps'"):
        get_task("pubmedqa").load(tmp_path)


def test_choice_parser_is_safe_and_exact():
    task = get_task("pubmedqa")
    assert task.parse(" yes") == "yes"
    assert task.parse("Maybe, the evidence is weak") == "maybe"
    assert task.parse("__import__('os').system('echo hi')") == ""
    assert task.parse("noyes") == ""  # whole words only
    assert get_task("synthetic_subdomains").parse(" 2940 ") == "2940"


def test_metrics():
    assert exact_match(["a", "b", "c"], ["a", "x", "c"]) == pytest.approx(2 / 3)
    assert exact_match([], []) == 0.0
    # labels yes: tp1 fp1 fn0 -> 2/3; no: tp0 fp0 fn1 -> 0; macro = 1/3
    assert macro_f1(["yes", "yes"], ["yes", "no"]) == pytest.approx(1 / 3)
    assert isinstance(macro_f1(["a"], ["a"]), float)
    with pytest.raises(ValueError):
        exact_match(["a"], ["a", "b"])


def test_fingerprint_follows_the_declaration():
    """Prepare's job parameters carry it: editing a task's YAML (or a base it includes, e.g. max_length in
    tasks/jmed_llm/_choice.yaml) must re-prepare and retrain."""
    import dataclasses

    task = get_task("crade")
    assert task.fingerprint() == dataclasses.replace(task).fingerprint()
    assert dataclasses.replace(task, max_length=64).fingerprint() != task.fingerprint()
    prompt = dict(task.prompt, template=task.prompt["template"] + " ")
    assert dataclasses.replace(task, prompt=prompt).fingerprint() != task.fingerprint()
