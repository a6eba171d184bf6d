"""Bad input to the task registry fails at the start, in one line naming the file or key: task options, metrics on
the wrong task, duplicate ids and train leakage, broken or misnamed task files, malformed data files."""
import dataclasses
import json
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SYNTHETIC

import tasks
from scd.cli import main
from scd.config import ConfigError, load_config
from scd.registry import UnknownNameError
from tasks import SPLITS, TaskDataError, TaskDataWarning, TaskFileError, get_task, list_tasks, load_registry, metrics

# -- task options ----------------------------------------------------------------------------------------------------

CAPPED = [t.name for t in list_tasks() if any(k.startswith("max_") for k in t.options)]


@pytest.mark.parametrize("value", [0, -5, True, 2.5, "3"])
def test_a_row_cap_must_be_a_positive_integer_or_null(value):
    assert CAPPED
    for name in CAPPED:
        task = get_task(name)
        for key in (k for k in task.options if k.startswith("max_")):
            with pytest.raises(ValueError, match=rf"task '{name}' option '{key}' must be a positive integer \(a cap "
                                                 rf"on rows\) or null \(no cap\), got {value!r}"):
                task.check_options({key: value})
            assert task.check_options({key: None})[key] is None and task.check_options({key: 1})[key] == 1


def test_a_bad_cap_fails_config_validation_naming_the_task_and_key():
    with pytest.raises(ConfigError, match=r"tasks\.pubmedqa: task 'pubmedqa' option 'max_train' must be a positive "
                                          r"integer .* got -5"):
        load_config("default", {"tasks": ["pubmedqa"], "task_overrides": {"pubmedqa": {"task_options": {
            "max_train": -5}}}})


def test_a_cap_keeps_exactly_that_many_rows(shared_data):
    rows = get_task("pubmedqa").load(shared_data, {"max_train": 3, "max_test": None})
    assert len(rows["train"]) == 3 and len(rows["test"]) == 500


def test_other_options_are_checked_against_their_declared_type():
    task = get_task("synthetic_subdomains")
    with pytest.raises(ValueError, match=r"option 'n_val' must be a non-negative integer \(a count\), got -1"):
        task.check_options({"n_val": -1})
    with pytest.raises(ValueError, match=r"option 'n_val' must be of type int .*got 2\.5"):
        task.check_options({"n_val": 2.5})
    with pytest.raises(ValueError, match=r"option 'sfs_noise' must be of type float .*got nan"):
        task.check_options({"sfs_noise": float("nan")})
    with pytest.raises(ValueError, match=r"option 'n_val' must be of type int .*got None"):
        task.check_options({"n_val": None})
    with pytest.raises(ValueError, match=r"task_options must be a mapping"):
        task.check_options([1])
    assert task.check_options({"data_seed": -3})["data_seed"] == -3  # a seed is not a count


# -- a registry built from a folder of task files ------------------------------------------------------------------

def _declaration(name: str, **over) -> dict:
    spec = yaml.safe_load((tasks.TASK_DIR / "pubmedqa" / "pubmedqa.yaml").read_text(encoding="utf-8"))
    return {**spec, "name": name, "groups": ["mine"], **over}


def _write(folder: Path, file: str, spec) -> Path:
    path = folder / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


def test_a_declared_cap_of_zero_or_an_untyped_option_is_refused_at_registration(tmp_path):
    _write(tmp_path, "a.yaml", _declaration("a", options={"split_seed": 0, "n_val": 50, "max_train": 0}))
    _write(tmp_path, "b.yaml", _declaration("b", options={"split_seed": 0, "n_val": 50, "mode": None}))
    reg = load_registry(tmp_path)
    with pytest.raises(TaskFileError, match=r"a\.yaml: option 'max_train' must be a positive integer"):
        reg.get("a")
    with pytest.raises(TaskFileError, match=r"b\.yaml: option 'mode' is declared with the default null"):
        reg.get("b")


def test_a_yaml_syntax_error_names_file_and_line_and_leaves_other_tasks_usable(tmp_path):
    _write(tmp_path, "good.yaml", _declaration("good"))
    _write(tmp_path, "sub/broken.yaml", "name: broken\ndescription: [unclosed\nloader: x:y\n")
    reg = load_registry(tmp_path)
    assert reg.get("good").name == "good" and reg.expand(["mine"]) == ["good"]
    with pytest.raises(TaskFileError, match=r"^\S+/sub/broken\.yaml, line \d+, column \d+: YAML syntax error: .*; fix "
                                            r"the file"):
        reg.get("broken")
    with pytest.raises(TaskFileError, match=r"broken\.yaml, line"):
        reg.expand(["good", "broken"])
    with pytest.raises(UnknownNameError, match=r"unknown task 'other'.*Unreadable task files.*sub/broken\.yaml"):
        reg.get("other")
    assert len(reg.broken_messages()) == 1 and "\n" not in reg.broken_messages()[0]


def test_a_broken_file_blocks_the_groups_it_would_join(tmp_path):
    _write(tmp_path, "good.yaml", _declaration("good"))
    _write(tmp_path, "bad.yaml", "name: bad\ngroups: [mine, other]\ndescription: : :\n")
    reg = load_registry(tmp_path)
    with pytest.raises(TaskFileError, match=r"bad\.yaml, line"):
        reg.expand(["mine"])  # the group would silently lose a task
    assert reg.expand(["good"]) == ["good"]


def test_a_broken_base_names_the_base_file(tmp_path):
    _write(tmp_path, "fam/_base.yaml", "description: x\nloader: [\n")
    _write(tmp_path, "fam/one.yaml", "include: _base.yaml\nname: fam_one\n")
    _write(tmp_path, "fam/two.yaml", "include: _gone.yaml\nname: fam_two\n")
    reg = load_registry(tmp_path)
    with pytest.raises(TaskFileError, match=r"fam/_base\.yaml, line \d+, column \d+: YAML syntax error"):
        reg.get("fam_one")
    with pytest.raises(TaskFileError, match=r"fam/two\.yaml: includes _gone\.yaml, which does not exist"):
        reg.get("fam_two")


@pytest.mark.parametrize("name", ["PubMedQA2", "pub-med", "pub med", "ünï"])
def test_a_task_name_outside_the_workflow_pattern_is_refused(tmp_path, name):
    _write(tmp_path, "t.yaml", _declaration(name))
    reg = load_registry(tmp_path)
    assert not list(reg.tasks)
    with pytest.raises(TaskFileError, match=rf"t\.yaml: task name {name!r} must match \[a-z0-9_\]\+"):
        reg.get(name)


def test_a_misspelt_loader_is_refused_at_registration(tmp_path):
    _write(tmp_path, "m.yaml", _declaration("m", loader="tasks.pubmedqa.lodaer:load"))
    _write(tmp_path, "f.yaml", _declaration("f", loader="tasks.pubmedqa.loader:lod"))
    _write(tmp_path, "p.yaml", _declaration("p", loader="nopackage.loader:load"))
    _write(tmp_path, "s.yaml", _declaration("s", loader="tasks.pubmedqa.loader"))
    reg = load_registry(tmp_path)
    with pytest.raises(TaskFileError, match=r"m\.yaml: loader 'tasks\.pubmedqa\.lodaer:load' names the module "
                                            r"'tasks\.pubmedqa\.lodaer', which is not found"):
        reg.get("m")
    with pytest.raises(TaskFileError, match=r"f\.yaml: loader 'tasks\.pubmedqa\.loader:lod': the module "
                                            r"'tasks\.pubmedqa\.loader' defines no 'lod'"):
        reg.get("f")
    with pytest.raises(TaskFileError, match=r"p\.yaml: loader 'nopackage\.loader:load' names the module"):
        reg.get("p")
    with pytest.raises(TaskFileError, match=r"s\.yaml: loader 'tasks\.pubmedqa\.loader' must be 'module:function'"):
        reg.get("s")


def test_registration_does_not_import_loader_modules(tmp_path, monkeypatch):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "heavy_loader_for_test.py").write_text(
        "raise RuntimeError('imported at registration')\n\ndef load(task, data_dir, opt):\n    return {}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    _write(tmp_path / "decl", "h.yaml", _declaration("h", loader="heavy_loader_for_test:load"))
    reg = load_registry(tmp_path / "decl")
    assert reg.get("h").loader == "heavy_loader_for_test:load" and "heavy_loader_for_test" not in sys.modules


def test_a_task_declared_twice_names_both_files(tmp_path):
    _write(tmp_path, "x/one.yaml", _declaration("twice"))
    _write(tmp_path, "y/two.yaml", _declaration("twice"))
    _write(tmp_path, "other.yaml", _declaration("other"))
    reg = load_registry(tmp_path)
    with pytest.raises(TaskFileError, match=r"task 'twice' is declared twice, in \S+/x/one\.yaml and "
                                            r"\S+/y/two\.yaml; rename one"):
        reg.get("twice")
    assert reg.get("other").name == "other" and len(reg.broken_messages()) == 1


def test_scd_tasks_list_prints_broken_files_one_line_each(tmp_path, monkeypatch, capsys):
    _write(tmp_path, "good.yaml", _declaration("good"))
    _write(tmp_path, "broken.yaml", "name: broken\n  description: x\n")
    _write(tmp_path, "Upper.yaml", _declaration("Upper"))
    monkeypatch.setattr(tasks, "registry", lambda: load_registry(tmp_path))
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("good ")
    lines = out[out.index("unusable task files"):].splitlines()[1:]
    assert len(lines) == 2 and any("broken.yaml, line 2" in x for x in lines) and any("'Upper'" in x for x in lines)


def test_the_package_registry_has_no_broken_files():
    assert tasks.broken_task_files() == []


# -- metrics against the task they score ---------------------------------------------------------------------------

def _test_rows(task, data: Path) -> list[dict]:
    opts = {k: v for k, v in TINY_SYNTHETIC.items() if k in task.options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TaskDataWarning)
        return task.load(data, opts)["test"]


def _representable(task, row) -> bool:
    """Whether the row's gold BIO tags follow from its own mention strings: a mention string that also occurs
    untagged in the sentence (NCBI: "VHL" the gene and "VHL" the disease in one sentence) cannot be told apart in
    an answer that lists strings, so there even a perfect answer cannot reach the maximum."""
    specs = [s for s in task.metric_specs if s["name"].startswith("seqeval")]
    return all(metrics.entities_to_bio(row["tokens"], task.gold(row), s["params"].get("entity_type", "Disease"))
               == row["tags"] for s in specs)


def test_gold_answers_fed_back_score_every_metrics_best_on_every_task(shared_data):
    checked = []
    for task in list_tasks():
        rows = _test_rows(task, shared_data)
        kept = [r for r in rows if _representable(task, r)]
        assert len(kept) >= 0.99 * len(rows), task.name
        preds = [task.parse(r["answer"]) for r in kept]
        golds = [task.gold(r) for r in kept]
        assert preds == golds, task.name  # the answer text parses back to the gold
        scores = task.scores(preds, golds, kept)
        for spec in task.metric_specs:
            meta = metrics.METRICS.meta(spec["name"])
            best = meta.get("best", 1.0 if spec["direction"] == "max" else 0.0)
            assert scores[spec["key"]] == pytest.approx(best), (task.name, spec["key"], scores)
        checked.append(task.name)
    assert checked == [t.name for t in list_tasks()]


NER_TYPES = ["O", "B-Disease", "I-Disease", "B-Chemical", "I-Chemical"]


def test_a_single_type_ner_metric_on_a_multi_type_task_is_refused(tmp_path):
    ncbi = yaml.safe_load((tasks.TASK_DIR / "ncbi_disease" / "ncbi_disease.yaml").read_text(encoding="utf-8"))
    _write(tmp_path, "bc5.yaml", {**ncbi, "name": "bc5", "labels": NER_TYPES})
    _write(tmp_path, "typo.yaml", {**ncbi, "name": "typo",
                                   "metrics": [{"name": "seqeval_f1", "entity_type": "disease"}]})
    _write(tmp_path, "lab.yaml", {**ncbi, "name": "lab", "parser": "label"})
    _write(tmp_path, "kap.yaml", _declaration("kap", metrics=[{"name": "cohen_kappa", "weight": "linear"}]))
    reg = load_registry(tmp_path)
    with pytest.raises(TaskFileError, match=r"bc5\.yaml: metric 'seqeval_f1' scores one entity type \('Disease'.*"
                                            r"the task's labels have the type\(s\) \['Chemical', 'Disease'\]"):
        reg.get("bc5")
    with pytest.raises(TaskFileError, match=r"typo\.yaml: metric 'seqeval_f1' scores one entity type \('disease'"):
        reg.get("typo")
    with pytest.raises(TaskFileError, match=r"lab\.yaml: metric 'seqeval_f1' compares lists of entity strings, but "
                                            r"the task's parser 'label'"):
        reg.get("lab")
    with pytest.raises(TaskFileError, match=r"kap\.yaml: metric 'cohen_kappa' takes no parameter 'weight'\. Did you "
                                            r"mean 'weights'"):
        reg.get("kap")


def test_a_multi_type_gold_is_refused_at_scoring():
    tokens = ["aspirin", "causes", "asthma"]
    examples = [{"tokens": tokens, "tags": ["B-Chemical", "O", "B-Disease"]}]
    with pytest.raises(ValueError, match=r"seqeval_f1: test row 0 has gold mentions of type\(s\) \['Chemical'\], but "
                                         r"the metric scores only 'Disease'"):
        metrics.get("seqeval_f1")([["aspirin", "asthma"]], [["aspirin", "asthma"]], examples=examples)


# -- duplicate ids and leakage ---------------------------------------------------------------------------------------

def _with_splits(splits: dict, **declared):
    """The synthetic task, its loader returning `splits`."""
    task = dataclasses.replace(get_task("synthetic_subdomains"), **declared)
    object.__setattr__(task, "hook", lambda: lambda *_: {k: [dict(r) for r in v] for k, v in splits.items()})
    return task


def _rows(prefix: str, n: int) -> list[dict]:
    return [{"id": f"{prefix}-{i}", "prompt": f"{prefix} prompt {i}", "answer": f"a{i}", "subdomain": "tfs"}
            for i in range(n)]


def test_duplicate_ids_in_a_split_are_an_error_with_counts():
    train = _rows("train", 5)
    splits = {"train": train + [dict(train[0]), dict(train[1])], "validation": _rows("val", 2), "test": _rows("t", 2)}
    with pytest.raises(TaskDataError, match=r"task 'synthetic_subdomains': 2 train row\(s\) repeat an earlier id "
                                            r"\(e\.g\. \['train-0', 'train-1'\]; allowed: 0\)"):
        _with_splits(splits).load(Path("."), {})
    with pytest.warns(TaskDataWarning, match=r"2 duplicate id\(s\) in train"):
        _with_splits(splits, allow_duplicates={"train": 2}).load(Path("."), {})


def test_test_or_validation_prompts_copied_into_train_are_an_error_with_counts():
    train, test, val = _rows("train", 6), _rows("t", 3), _rows("val", 3)
    leaked = [dict(test[0], id="train-x"), dict(test[1], id="train-y", answer="other"), dict(val[2], id="train-z")]
    splits = {"train": train + leaked, "validation": val, "test": test}
    with pytest.raises(TaskDataError, match=r"1 validation row\(s\) repeat a train prompt \(1 with its answer; "
                                            r"allowed: 0\); 2 test row\(s\) repeat a train prompt \(1 with its answer; "
                                            r"allowed: 0\)\. Check the data \(`scd data verify "
                                            r"synthetic_subdomains`\); if the public data set genuinely has "
                                            r"them, declare .*known_overlap"):
        _with_splits(splits).load(Path("."), {})
    task = _with_splits(splits, known_overlap={"validation": 1, "test": 2})
    with pytest.warns(TaskDataWarning, match=r"1 validation prompt\(s\) also in train, 2 test prompt\(s\) also in "
                                             r"train"):
        loaded = task.load(Path("."), {})
    assert task.split_checks(loaded, warn=False)["train_overlap"] == {
        "validation": {"prompt": 1, "prompt_answer": 1}, "test": {"prompt": 2, "prompt_answer": 1}}
    with pytest.raises(TaskDataError, match=r"2 test row\(s\) repeat a train prompt .*allowed: 1"):
        _with_splits(splits, known_overlap={"validation": 1, "test": 1}).load(Path("."), {})


def test_the_public_data_sets_overlap_exactly_as_declared(shared_data):
    for task in list_tasks():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TaskDataWarning)
            splits = task.load(shared_data, {k: v for k, v in TINY_SYNTHETIC.items() if k in task.options})
        found = task.split_checks(splits, warn=False)
        assert {s: c["prompt"] for s, c in found["train_overlap"].items() if c["prompt"]} == (task.known_overlap or {})
        assert {s: n for s, n in found["duplicate_ids"].items() if n} == (task.allow_duplicates or {})
    assert get_task("ncbi_disease").known_overlap == {"validation": 5, "test": 1}


def test_the_prepared_manifest_records_the_counts(tmp_path, shared_data, monkeypatch):
    from scd.config import stage_config
    from scd.stages.prepare import prepare

    monkeypatch.setenv("SCD_DATA_DIR", str(shared_data))
    cfg = load_config("smoke", {"results_dir": str(tmp_path), "tasks": ["ncbi_disease"], "task_overrides": {
        "ncbi_disease": {"task_options": {"max_train": None, "max_validation": None, "max_test": None},
                         "tokenizer": {"vocab_size": 300}}}})
    with pytest.warns(TaskDataWarning, match="ncbi_disease"):
        manifest = prepare(stage_config(cfg, "ncbi_disease", "prepare"), tmp_path / "p")
    assert manifest["data_checks"]["train_overlap"]["validation"] == {"prompt": 5, "prompt_answer": 5}
    assert manifest["data_checks"]["train_overlap"]["test"] == {"prompt": 1, "prompt_answer": 1}
    assert manifest["data_checks"]["duplicate_ids"] == {s: 0 for s in SPLITS}
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["data_checks"] == manifest["data_checks"]


# -- malformed data files name the file, the line and the fix -------------------------------------------------------

def _copy(shared_data: Path, tmp_path: Path, sub: str) -> Path:
    shutil.copytree(shared_data / sub, tmp_path / sub)
    for p in (tmp_path / sub).rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return tmp_path / sub


def test_pubmedqa_bad_byte_and_malformed_json_name_the_file_line_and_fix(shared_data, tmp_path):
    path = _copy(shared_data, tmp_path, "pubmedqa") / "ori_pqal.json"
    raw = path.read_bytes()
    at = raw.index(b"QUESTION", 5000)
    line = raw.count(b"\n", 0, at) + 1
    path.write_bytes(raw[:at] + b"\xff" + raw[at + 1:])
    with pytest.raises(TaskDataError, match=rf"task 'pubmedqa': \S+ori_pqal\.json: line {line}, column \d+: byte "
                                            rf"0xff is not valid UTF-8.*`scd data verify pubmedqa`.*`scd data fetch "
                                            rf"pubmedqa`"):
        get_task("pubmedqa").load(tmp_path)
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TaskDataError, match=r"ori_pqal\.json: line \d+, column \d+: not valid JSON .*scd data fetch "
                                            r"pubmedqa"):
        get_task("pubmedqa").load(tmp_path)
    path.write_text("[1, 2]")
    with pytest.raises(TaskDataError, match=r"ori_pqal\.json: expected a JSON object at the top level, got list"):
        get_task("pubmedqa").load(tmp_path)
    data = json.loads(raw)
    data[next(iter(data))]["final_decision"] = "perhaps"
    path.write_text(json.dumps(data))
    with pytest.raises(TaskDataError, match=r"ori_pqal\.json: entry \d+ has label 'perhaps'.*scd data verify pubmedqa"):
        get_task("pubmedqa").load(tmp_path)


def test_every_loader_reads_through_the_shared_readers():
    for path in sorted(tasks.TASK_DIR.glob("*/loader.py")):
        source = path.read_text(encoding="utf-8")
        assert "from tasks.readers import" in source, path
        assert not any(call in source for call in ("open(", "json.load", "read_text(", "read_bytes(")), path


def test_malformed_csv_names_file_row_and_fix(shared_data, tmp_path):
    path = _copy(shared_data, tmp_path, "jmed_llm") / "all" / "CRADE.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:3] + ['"unclosed,' + lines[3]] + lines[4:]), encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"task 'crade': \S+CRADE\.csv: data row starting at line \d+: .*"
                                            r"`scd data verify crade`"):
        get_task("crade").load(tmp_path)


def test_a_broken_task_file_leaves_runs_of_other_tasks_alone(tmp_path, monkeypatch):
    """The default profile's task_overrides name ncbi_disease; with its file broken, the default profile (which does
    not run it) still loads, and a run of it gets the file's own error, not "not a task or group name"."""
    import shutil

    import tasks
    from scd import config

    folder = tmp_path / "tasks"
    shutil.copytree(tasks.TASK_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "ncbi_disease" / "ncbi_disease.yaml").write_text("name: ncbi_disease\ndescription: [unclosed\n")
    reg = tasks.load_registry(folder)
    monkeypatch.setattr(tasks, "registry", lambda: reg)
    monkeypatch.setattr(config, "registry", lambda: reg)
    assert "ncbi_disease" in config.load_config("default")["task_overrides"]
    with pytest.raises(config.ConfigError) as e:
        config.load_config("default", {"tasks": ["ncbi_disease"]})
    assert "ncbi_disease.yaml, line 3" in str(e.value) and "not a task or group name" not in str(e.value)


def test_a_malformed_benchmark_protocol_or_evaluation_metric_is_refused_at_registration(tmp_path):
    choices = {"mode": "choices", "choices": ["yes", "no", "maybe"]}
    cases = {
        "proto": ({"evaluation": {**choices, "benchmark": {"mode": "sample", "max_new_tokens": 512}}},
                  r"proto\.yaml: evaluation\.benchmark must be a mapping \{mode: generate\|choices, max_new_tokens: n, "
                  r"parser: name\}"),
        "budget": ({"evaluation": {**choices, "benchmark": {"mode": "generate", "max_new_tokens": -1}}},
                   r"budget\.yaml: evaluation\.benchmark must be a mapping"),
        "parser": ({"evaluation": {**choices, "benchmark": {"mode": "generate", "parser": "leter"}}},
                   r"parser\.yaml: evaluation\.benchmark: unknown parser 'leter'\. Did you mean 'letter'"),
        "kind": ({"evaluation": {**choices, "benchmark": {"mode": "generate", "parser": "python_list"}}},
                 r"kind\.yaml: evaluation\.benchmark\.parser 'python_list' must give what the task's parser 'choice' "
                 r"gives"),
        "nolabels": ({"labels": None, "metrics": ["accuracy", "macro_f1"]},
                     r"nolabels\.yaml: metric 'macro_f1' averages over the task's categories: declare `labels`"),
        "outside": ({"metrics": ["accuracy", {"name": "cohen_kappa", "outside": "drop"}]},
                    r"outside\.yaml: metric 'cohen_kappa' takes outside 'max' or 'sklearn', got 'drop'"),
    }
    for name, (over, _) in cases.items():
        spec = {k: v for k, v in _declaration(name, **over).items() if v is not None}
        _write(tmp_path, f"{name}.yaml", spec)
    reg = load_registry(tmp_path)
    for name, (_, message) in cases.items():
        with pytest.raises(TaskFileError, match=message):
            reg.get(name)
    assert not load_registry(tasks.TASK_DIR).broken  # the shipped declarations pass the same checks


def test_an_unknown_evaluation_mode_fails_config_validation():
    with pytest.raises(ConfigError, match=r"evaluation\.mode is invalid: 'bench' is not one of \['task', 'benchmark', "
                                          r"'generate', 'choices'\]"):
        load_config("default", {"evaluation": {"mode": "bench"}})
