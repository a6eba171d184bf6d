"""Bad inputs and misuse, tried as a user would: each case runs the real command (`scd ...`, or a Snakemake dry run)
in a fresh workspace and checks what the user gets:

- a non-zero exit and one error line that names the file or key and says how to fix it (`expect`, a regex that
  must match within that one line);
- no Python traceback;
- nothing written outside the results directory (the workspace holds a file beside it, and the inputs the case
  made; Snakemake's own `.snakemake/` is its metadata, not ours);
- no finished result lost (a finished result in the results directory stays byte for byte).

`python tests/test_bad_inputs.py --write docs/bad-inputs.md` runs every case and writes the docs table from what
each actually printed; `test_docs_table_lists_every_case` keeps that table in step with the cases.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS_TABLE = REPO / "docs" / "bad-inputs.md"
DATA_ENV = "SCD_DATA_DIR"
SCD = [sys.executable, "-m", "scd.cli"]
FINISHED = "results/synthetic_subdomains/seed0/eval/td.json"  # a finished result every workspace holds


@dataclass(frozen=True)
class Case:
    id: str
    bad: str                                   # the bad input or misuse, as the docs table names it
    argv: Callable[["Workspace"], list[str]]   # the command; may first make the bad input in the workspace (and
    #                                            set what the command's environment needs in `w.env`)
    expect: str                                # regex the error line must match: the file or key, and the fix
    fails: bool = True                         # False: a misuse the command survives (it still says so)


class Workspace:
    """A folder standing for a user's project: results/ (the results directory, with one finished result),
    beside.txt (an unrelated file next to it), inputs/ (what the case makes), data/ (a copy of the task data, made
    on demand)."""

    def __init__(self, root: Path, data: Path):
        self.root, self.shared = root, data
        self.results = root / "results"
        self.inputs = root / "inputs"
        self.inputs.mkdir(parents=True)
        (root / "beside.txt").write_text("an unrelated file beside the results directory\n")
        finished = root / FINISHED
        finished.parent.mkdir(parents=True)
        finished.write_text(json.dumps({"task": "synthetic_subdomains", "seed": 0, "model": "td", "score": 0.5}))

        self.env: dict[str, str] = {}  # what the case sets in the command's environment

    def data_copy(self, *subdirs: str) -> Path:
        """A copy of the task data (only `subdirs`), to tamper with."""
        dst = self.root / "data"
        for s in subdirs:
            shutil.copytree(self.shared / s, dst / s)
        return dst

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
        return path

    def snakemake(self, *config: str, configfile: Path | None = None, profile: str = "smoke") -> list[str]:
        """A dry run of the workflow profile with `config` items (key=value) and an overlay file."""
        return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--workflow-profile",
                str(REPO / "profiles" / profile), "--directory", str(self.root), "--dry-run",
                *(["--configfile", str(configfile)] if configfile else []),
                "--config", f"results_dir={self.results}", *config]

    def snapshot(self) -> dict[str, str]:
        """Every file outside results/ and .snakemake/, with its sha256; the finished result's too."""
        out = {}
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root)
            if p.is_file() and (rel.parts[0] not in ("results", ".snakemake") or str(rel) == FINISHED):
                out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
        return out


def _flip_byte(path: Path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x20
    path.write_bytes(bytes(data))


def _job(stage: str, task: str = "synthetic_subdomains", **over) -> str:
    """A job configuration as the Snakefile passes it (the smoke profile's), with `over` replacing its keys (a
    mapping value is merged one level deep)."""
    from scd.config import load_config, stage_config
    from scd.settings import to_dict

    name = {"sft": "student", "zero_shot": "student", "distill": "td"}.get(stage)
    job = to_dict(stage_config(load_config("smoke"), task, stage, name))
    return json.dumps(job | {k: job[k] | v if isinstance(v, dict) else v for k, v in over.items()})


def _prepared(w: Workspace) -> Path:
    """The smoke profile's synthetic task, prepared into the results directory."""
    out = w.results / "synthetic_subdomains" / "prepared"
    if not out.exists():
        subprocess.run(SCD + ["prepare", "--task", "synthetic_subdomains", "--config", _job("prepare"),
                              "--out", str(out)], check=True, capture_output=True, cwd=w.root, env=_env({}))
    return out


def _tampered_pubmedqa(w: Workspace, byte: int | None = None) -> Path:
    """A copy of the PubMedQA data with one byte changed (XOR 0x20, or set to `byte`); the data directory."""
    data = w.data_copy("pubmedqa")
    path = data / "pubmedqa" / "ori_pqal.json"
    raw = bytearray(path.read_bytes())
    raw[5000] = byte if byte is not None else raw[5000] ^ 0x20
    path.write_bytes(bytes(raw))
    w.env[DATA_ENV] = str(data)
    return data


def _leaked_tweets(w: Workspace) -> Path:
    """English tweets whose first test tweet (and its label) is copied into train."""
    data = w.data_copy("tweet_sentiment_multilingual")
    folder = data / "tweet_sentiment_multilingual" / "english"
    for kind in ("text", "labels"):
        first = (folder / f"test_{kind}.txt").read_text(encoding="utf-8").splitlines()[0]
        train = folder / f"train_{kind}.txt"
        train.write_text(train.read_text(encoding="utf-8").rstrip("\n") + "\n" + first + "\n", encoding="utf-8")
    w.env[DATA_ENV] = str(data)
    return data


def _broken_plugin(w: Workspace) -> None:
    """An installed package whose plugin entry point names a module that does not exist (a typo)."""
    site = w.inputs / "site"
    dist = site / "my_lab-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-lab\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[scd_bench.baselines]\nmy_lab = my_lab.baselinez\n")
    (site / "my_lab").mkdir()
    (site / "my_lab" / "__init__.py").write_text("")
    w.env["PYTHONPATH"] = str(site)


def _cfg(**over) -> list[str]:
    return [f"{k}={v}" for k, v in over.items()]


CASES = [
    # ---- configuration (the workflow stops at start) -------------------------------------------------------------
    Case("config-misspelt-key", "a misspelt top-level config key",
         lambda w: w.snakemake("sedes=[0]"), r"'sedes'.*Did you mean 'seeds'"),
    Case("config-wrong-type", "a config value of the wrong type (`seeds: zero`)",
         lambda w: w.snakemake("seeds=zero"), r"seeds.*invalid"),
    Case("config-unknown-task", "an unknown task name",
         lambda w: w.snakemake("tasks=[pubmedq]"), r"unknown task or group 'pubmedq'.*pubmedqa"),
    Case("config-unknown-method", "an unknown method in run_methods",
         lambda w: w.snakemake("run_methods=[scd+aww]"), r"run_methods: 'scd\+aww'.*scd\+aw"),
    Case("config-unknown-profile", "an unknown profile name",
         lambda w: w.snakemake("profile=smok"), r"no config overlay for profile 'smok'.*smoke"),
    Case("config-unknown-override", "task_overrides for a name that is no task or group",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "task_overrides: {pubmed: {}}\n")),
         r"task_overrides\.pubmed: not a task or group name.*pubmedqa"),
    Case("config-ablation-task", "an ablation over a task the profile does not run",
         lambda w: w.snakemake(configfile=w.write("a.yaml", "ablations: {tasks: [crade]}\n")),
         r"ablations\.tasks: 'crade' is not a configured task"),

    Case("config-task-option-zero", "a row cap of 0 (`max_train: 0`, which once meant no cap)",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "task_overrides: {pubmedqa: {task_options: "
                                                                 "{max_train: 0}}}\n")),
         r"option 'max_train' must be a positive integer .* or null \(no cap\), got 0"),
    Case("config-task-option-negative", "a negative row cap (`max_train: -5`)",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "task_overrides: {pubmedqa: {task_options: "
                                                                 "{max_train: -5}}}\n")),
         r"option 'max_train' must be a positive integer .*got -5"),
    Case("config-task-option-bool", "a row cap given as a boolean (`max_train: true`)",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "task_overrides: {pubmedqa: {task_options: "
                                                                 "{max_train: true}}}\n")),
         r"option 'max_train' must be a positive integer .*got True"),
    Case("config-task-option-float", "a fractional row cap (`max_train: 2.5`)",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "task_overrides: {pubmedqa: {task_options: "
                                                                 "{max_train: 2.5}}}\n")),
         r"option 'max_train' must be a positive integer .*got 2\.5"),
    Case("config-lam-not-a-number", "a method option of the wrong type (`lam: one`)",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "methods: {scd+aw: {schedule_options: {lam: one}}}\n")),
         r"methods\.scd\+aw\.schedule_options\.lam: expected a number, got 'one'"),
    Case("config-probe-source", "an SCD probe source that is no split (`probe_source: test`)",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "methods: {scd+aw: {schedule_options: "
                                                                 "{probe_source: test}}}\n")),
         r"probe_source must be one of train, validation, transfer, got 'test'"),
    Case("config-scd-scale", "an SCD term scale that does not exist (`scale: zscore`)",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "methods: {scd+aw: {schedule_options: "
                                                                 "{scale: zscore}}}\n")),
         r"scale must be one of raw, normalized, got 'zscore'"),
    Case("config-evaluation-mode", "an evaluation mode that does not exist (`evaluation.mode: bench`)",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "evaluation: {mode: bench}\n")),
         r"evaluation\.mode is invalid: 'bench' is not one of"),
    Case("config-prompt-format", "a prompt format that does not exist (`tokenizer.prompt_format: markdown`)",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "tokenizer: {prompt_format: markdown}\n")),
         r"tokenizer\.prompt_format is invalid: 'markdown' is not one of"),
    Case("config-reference-preset-typo", "a misspelt reference preset in run_methods (`taid_rfe`)",
         lambda w: w.snakemake("run_methods=[taid_rfe]"),
         r"run_methods: 'taid_rfe'.*Did you mean 'taid_ref' or 'taid'\?"),
    Case("chat-format-trained-tokenizer", "`prompt_format: chat` with a tokenizer trained on the task (no template)",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "tokenizer: {prompt_format: chat}\n")),
         r"prompt_format chat for .*tokenizer\.source: train\) and has no chat template; use plain or auto"),
    Case("chat-format-without-template", "`prompt_format: chat` in a job for a tokenizer without a chat template",
         lambda w: [*SCD, "prepare", "--task", "synthetic_subdomains", "--config",
                    _job("prepare", tokenizer={"prompt_format": "chat"}), "--out", str(w.results / "prep")],
         r"prompt_format chat: this tokenizer has no chat template .*use plain or auto"),
    Case("config-stages-epochs", "distillation epochs that the stages do not divide",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "task_overrides: {synthetic_subdomains: {training: "
                                                                 "{distill: {epochs: 3}}}}\n")),
         r"epochs 3 does not split into \d stages.*set training\.distill\.epochs to a multiple of \d"),
    Case("config-allow-modified-type", "the modified-data switch given as a string",
         lambda w: w.snakemake(configfile=w.write("o.yaml", "allow_modified_data: 'yes'\n")),
         r"allow_modified_data is invalid: 'yes' is not of type 'boolean'"),
    Case("plugin-typo-needed", "a run whose method comes from a plugin that fails to import (entry point typo)",
         lambda w: _broken_plugin(w) or w.snakemake(configfile=w.write("o.yaml", "methods: {mine: {divergence: "
                                                                           "my_l2}}\nrun_methods: [mine]\n")),
         r"unknown divergence 'my_l2'.*my_lab = my_lab\.baselinez.*my-lab 0\.1.*No module named"),
    Case("plugin-typo-unneeded", "a broken plugin, when the command does not need it (`scd methods list` works, "
         "naming it)", lambda w: _broken_plugin(w) or SCD + ["methods", "list"],
         r"broken: plugin entry point my_lab = my_lab\.baselinez .*my-lab 0\.1.*No module named", fails=False),

    # ---- stage commands (what a rule runs, or a user by hand) ----------------------------------------------------
    Case("job-config-not-json", "a job configuration that is not JSON",
         lambda w: SCD + ["prepare", "--task", "synthetic_subdomains", "--config", "{", "--out", str(w.results)],
         r"prepare job's configuration is not valid JSON"),
    Case("job-config-unknown-key", "a job configuration with an unknown key",
         lambda w: SCD + ["prepare", "--task", "synthetic_subdomains", "--config", _job("prepare", threds=2),
                          "--out", str(w.results / "p")], r"'threds'.*Did you mean 'threads'"),
    Case("job-config-wrong-type", "a job configuration with a value of the wrong type",
         lambda w: SCD + ["prepare", "--task", "synthetic_subdomains", "--config", _job("prepare", threads="2"),
                          "--out", str(w.results / "p")], r"threads: expected int"),
    Case("job-no-prepared-data", "a training job pointed at a folder without prepared data",
         lambda w: SCD + ["sft", "--task", "synthetic_subdomains", "--role", "student", "--seed", "0",
                          "--config", _job("sft"), "--data", str(w.inputs), "--out", str(w.results / "s")],
         r"holds no prepared data.*run `scd prepare` first"),
    Case("job-malformed-split", "a prepared split with a malformed line",
         lambda w: SCD + ["evaluate", "--task", "synthetic_subdomains", "--name", "student_zero_shot", "--seed", "0",
                          "--config", _job("zero_shot"), "--zero-shot", "student", "--data", str(_broken_prepared(w)),
                          "--out", str(w.results / "e.json")], r"test\.jsonl:2: malformed JSON line.*scd prepare"),
    Case("cli-model-and-zero-shot", "`scd evaluate` given both --model and --zero-shot",
         lambda w: SCD + ["evaluate", "--task", "synthetic_subdomains", "--name", "x", "--seed", "0", "--model",
                          str(w.inputs), "--zero-shot", "student", "--data", str(w.inputs), "--out",
                          str(w.results / "e.json")], r"either --model .* or --zero-shot"),
    Case("cli-unknown-task-by-hand", "a stage run by hand for a task the profile does not configure",
         lambda w: SCD + ["prepare", "--task", "crade", "--profile", "smoke", "--out", str(w.results / "p")],
         r"task 'crade' is not in the 'smoke' configuration"),

    # ---- task data -------------------------------------------------------------------------------------------------
    Case("data-missing", "a data directory without the task's files",
         lambda w: SCD + ["data", "verify", "pubmedqa", "--data-dir", str(w.inputs)], r"scd data fetch pubmedqa"),
    Case("data-unknown-task", "`scd data fetch` for an unknown task",
         lambda w: SCD + ["data", "fetch", "pubmedq", "--data-dir", str(w.inputs)], r"'pubmedq'.*pubmedqa"),

    Case("data-tampered", "a data file that no longer matches its declared sha256",
         lambda w: _tampered_pubmedqa(w) and SCD + ["prepare", "--task", "pubmedqa", "--config", _job(
             "prepare", "pubmedqa"), "--out", str(w.results / "p")],
         r"ori_pqal\.json has sha256 [0-9a-f]{64}, expected [0-9a-f]{64}.*scd data fetch pubmedqa.*"
         r"allow_modified_data"),
    Case("data-tampered-at-start", "a tampered data file in an explicit data directory, at the workflow's start",
         lambda w: _tampered_pubmedqa(w) and w.snakemake(),
         r"ori_pqal\.json has sha256 .*scd data fetch pubmedqa.*allow_modified_data: true"),
    Case("data-bad-byte", "a byte that is not UTF-8 in a JSON data file (modified data allowed)",
         lambda w: _tampered_pubmedqa(w, 0xFF) and SCD + ["prepare", "--task", "pubmedqa", "--config", _job(
             "prepare", "pubmedqa", allow_modified_data=True), "--out", str(w.results / "p")],
         r"pubmedqa/ori_pqal\.json: line \d+, column \d+: byte 0xff is not valid UTF-8.*scd data fetch pubmedqa"),
    Case("data-test-in-train", "test rows copied into the training file (modified data allowed)",
         lambda w: _leaked_tweets(w) and SCD + ["prepare", "--task", "tweet_sentiment_english", "--config", _job(
             "prepare", "tweet_sentiment_english", allow_modified_data=True), "--out", str(w.results / "p")],
         r"1 test row\(s\) repeat a train prompt.*scd data verify tweet_sentiment_english"),
    Case("train-nan-loss", "a learning rate that makes the loss NaN",
         lambda w: SCD + ["sft", "--task", "synthetic_subdomains", "--role", "student", "--seed", "0", "--config",
                          _job("sft", training={"lr": 1e30, "grad_clip": None}), "--data", str(_prepared(w)),
                          "--out", str(w.results / "s")],
         r"training diverged at step \d+ \(student SFT\): loss nan.*lower the learning rate \(training\.student\.lr\)"),

    # ---- leaderboard and report ------------------------------------------------------------------------------------
    Case("aggregate-missing-input", "aggregating an evaluation summary that does not exist",
         lambda w: SCD + ["aggregate", str(w.results / "t" / "seed0" / "eval" / "td.json"), "--results-dir",
                          str(w.results), "--out", str(w.results / "leaderboard.json")],
         r"td\.json not found.*run the job that writes it"),
    Case("aggregate-ablations-not-json", "an ablation plan that is not JSON",
         lambda w: SCD + ["aggregate", str(w.root / FINISHED), "--ablations", "{", "--out",
                          str(w.results / "leaderboard.json")], r"--ablations is not valid JSON"),
    Case("aggregate-missing-row", "a planned run whose evaluation summary is not among the leaderboard's inputs",
         lambda w: SCD + ["aggregate", *_evaluations(w, ["td"]), "--expect",
                          json.dumps({"synthetic_subdomains": {"seeds": [1], "models": ["td", "scd+aw"]}})],
         r"1 planned run\(s\) have no evaluation summary.*synthetic_subdomains seed 1 scd\+aw.*snakemake --cores"),
    Case("aggregate-truncated-samples", "a truncated per-sample file",
         lambda w: SCD + ["aggregate", *_evaluations(w, ["teacher_sft", "student_sft"], cut="student_sft")],
         r"student_sft\.samples\.jsonl:1: malformed JSON line.*delete it and rerun the workflow"),
    Case("aggregate-null-gold-nll", "a per-sample record whose gold-answer loss was edited to null",
         lambda w: SCD + ["aggregate", *_evaluations(w, ["teacher_sft", "student_sft", "td"],
                                                      record='{"id": 0, "gold_nll": null, "correct": true}')],
         r"teacher_sft\.samples\.jsonl: the record of item 0 lacks an id, a numeric gold_nll or a correct field.*"
         r"delete it and rerun the workflow"),
    Case("aggregate-truncated-summary", "a truncated evaluation summary",
         lambda w: SCD + ["aggregate", *_evaluations(w, ["td"], cut_summary=True)],
         r"evaluation summary .*td\.json is not valid JSON .*delete it and rerun the workflow"),
    Case("mlflow-store-corrupt", "an MLflow store that is not a database",
         lambda w: SCD + ["prepare", "--task", "synthetic_subdomains", "--config", _corrupt_store(w), "--out",
                          str(w.results / "p")],
         r"MLflow store .*mlflow\.db is not a readable SQLite store.*move it aside .*and rerun"),
    Case("results-path-with-space", "a results directory whose path has a space (planned, nothing written beside it)",
         lambda w: w.snakemake("seeds=[0]", f"results_dir={w.root / 'with space' / 'results'}"),
         r"results -> .*/with space/results$", fails=False),
    Case("profile-with-other-config", "a workflow profile with other --config keys (the profile is kept and named)",
         lambda w: w.snakemake("seeds=[0]"), r"^scd-bench: profile smoke \(config/smoke\.yaml.*seeds \[0\]",
         fails=False),
    Case("methods-check-unknown", "a property check of an unknown divergence",
         lambda w: SCD + ["methods", "check", "fkll"], r"'fkll'.*fkl"),
    Case("run-record-not-json", "a job's run record that is not JSON (logging the runs to MLflow)",
         lambda w: SCD + ["tracking", "sync", "--results", _run_record(w, "{not json")],
         r"run record .*record\.json is not readable JSON .*move it aside and rerun `scd tracking sync`"),
    Case("run-record-incomplete", "a job's run record with a field missing",
         lambda w: SCD + ["tracking", "sync", "--results", _run_record(w, json.dumps({"name": "x"}))],
         r"run record .*record\.json has no valid 'id' .*move it aside and rerun `scd tracking sync`"),
    Case("report-ui-url-not-http", "an MLflow UI address that is not an http(s) URL",
         lambda w: w.snakemake("seeds=[0]", "report={ui_url: mlflow.lab}"),
         r"report\.ui_url is invalid: 'mlflow\.lab' does not match"),
    Case("collect-missing-part", "aggregating parts when one part's files are not there",
         lambda w: SCD + ["collect", "--profile", "smoke", "--config", "seeds=[0]", "tasks=[nrner]",
                          f"results_dir={w.results}"],
         r"files the leaderboard reads are missing .*snakemake --workflow-profile profiles/smoke .*tasks='\[nrner\]'"),
    Case("reuse-evaluation-missing", "reusing a shared teacher's evaluation that does not exist",
         lambda w: SCD + ["reuse-evaluation", "--source", str(w.results / "nope.json"), "--seed", "1", "--out",
                          str(w.results / "x.json")],
         r"nope\.json"),
    Case("tracking-sync-no-results", "logging the runs of a results directory that does not exist",
         lambda w: SCD + ["tracking", "sync", "--results", str(w.root / "nope")],
         r"results directory .*nope does not exist: give the one the workflow wrote"),
]


def _run_record(w: Workspace, text: str) -> str:
    """A results directory holding one run record with `text` as its contents; returns the directory."""
    from scd.layout import Layout

    record = Layout(w.results).run_record("0123abcd")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(text)
    return str(w.results)


def _evaluations(w: Workspace, models: list[str], cut: str | None = None, cut_summary: bool = False,
                 record: str = '{"id": 0, "nll": 1.0}') -> list[str]:
    """Evaluation summaries (and per-sample records, each file the one `record`) of the synthetic task's seed 1 for
    `models`, in the results layout; the samples file of model `cut` is truncated mid-line (with `cut_summary`,
    every summary is). Returns the aggregate arguments."""
    from scd.layout import Layout

    layout, task, summaries, samples = Layout(w.results), "synthetic_subdomains", [], []
    for model in models:
        summary, records = layout.eval_summary(task, 1, model), layout.eval_samples(task, 1, model)
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(json.dumps({"task": task, "seed": 1, "model": model, "metric": "accuracy", "score": 0.5,
                                       "subdomains": {}, "run_id": "r"})[: 15 if cut_summary else None])
        records.write_text(record + "\n" if model != cut else '{"id": 0, "nl')
        summaries.append(str(summary))
        samples.append(str(records))
    return [*summaries, "--samples", *samples, "--results-dir", str(w.results), "--out",
            str(w.results / "leaderboard.json")]


def _corrupt_store(w: Workspace) -> str:
    """The results directory's MLflow store overwritten with garbage; the prepare job's configuration."""
    from scd.layout import Layout

    db = Layout(w.results).mlflow_db()
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    return _job("prepare", results_dir=str(w.results))


def _broken_prepared(w: Workspace) -> Path:
    """A prepared synthetic task (small) whose test split has a cut line."""
    out = w.results / "synthetic_subdomains" / "prepared"
    if not out.exists():
        subprocess.run(SCD + ["prepare", "--task", "synthetic_subdomains", "--config", _job("prepare"),
                              "--out", str(out)], check=True, capture_output=True, cwd=w.root, env=_env({}))
    lines = (out / "test.jsonl").read_text().splitlines(keepends=True)
    (out / "test.jsonl").write_text(lines[0] + lines[1][: len(lines[1]) // 2] + "\n" + "".join(lines[2:]))
    return out


def _env(extra: dict) -> dict:
    """The commands' environment: this checkout's code first, no outside MLflow store, `extra` set."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | extra
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def run_case(case: Case, root: Path, data: Path) -> tuple[int, str, str, Workspace, dict, list[str]]:
    """(exit code, stdout, stderr, workspace, snapshot before, argv) of one case."""
    w = Workspace(root, data)
    argv = case.argv(w)
    before = w.snapshot()
    r = subprocess.run(argv, cwd=root, env=_env({DATA_ENV: str(data)} | w.env), capture_output=True, text=True,
                       timeout=600)
    return r.returncode, r.stdout, r.stderr, w, before, argv


def error_line(case: Case, out: str) -> str | None:
    return next((line for line in out.splitlines() if re.search(case.expect, line)), None)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, shared_data):
    code, out, err, w, before, argv = run_case(case, tmp_path, shared_data)
    text = out + err
    assert (code != 0) == case.fails, f"{case.id}: exit {code}\n{text[-2000:]}"
    assert "Traceback" not in text, f"{case.id}: a traceback\n{text[-3000:]}"
    line = error_line(case, text)
    assert line, f"{case.id}: no line matches {case.expect!r}\n{text[-2000:]}"
    if argv[:3] == SCD and case.fails:  # `scd` prints exactly one line on stderr
        assert len(err.strip().splitlines()) == 1, f"{case.id}: more than one line\n{err}"
    assert w.snapshot() == before, f"{case.id}: wrote outside the results directory or changed a finished result"


def test_enough_cases():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


def test_docs_table_lists_every_case():
    text = DOCS_TABLE.read_text(encoding="utf-8")
    missing = [c.id for c in CASES if f"`{c.id}`" not in text]
    assert not missing, f"{DOCS_TABLE} lacks {missing}: run `python tests/test_bad_inputs.py --write {DOCS_TABLE}`"


def table_row(case: Case, data: Path) -> str:
    """The docs table's row of one case: what it printed when run now."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        code, out, err, *_ = run_case(case, Path(tmp), data)
    line = error_line(case, out + err) or "(no matching line: the test fails)"
    line = line.replace(tmp, "…").replace(str(REPO), "<checkout>").replace("|", "\\|")
    return f"| `{case.id}` | {case.bad} | {code} | {line.strip()} |"


def write_table(path: Path, data: Path, only: list[str] = ()) -> None:
    """Run every case (or only those named, keeping the other rows as they are) and write the docs table."""
    unknown = sorted(set(only) - {c.id for c in CASES})
    if unknown:
        sys.exit(f"no case {', '.join(unknown)}")
    old = {m.group(1): line for line in (path.read_text(encoding="utf-8").splitlines() if path.exists() else [])
           if (m := re.match(r"^\| `([^`]+)` \|", line))}
    rows = []
    for case in CASES:
        rows.append(old[case.id] if only and case.id not in only and case.id in old else table_row(case, data))
        print(rows[-1], file=sys.stderr)
    head = ("# Bad inputs and what they get\n\n"
            "Each row is a misuse tried by `tests/test_bad_inputs.py` as a user would (the real command, in a fresh\n"
            "folder): the exit code and the one line it prints (an error, or for a misuse the command survives, the\n"
            "line saying so). The test also checks that no traceback is printed, nothing is written outside the\n"
            "results directory and no finished result is lost. Generated by\n"
            "`python tests/test_bad_inputs.py --write docs/bad-inputs.md [CASE ...]` (named cases only: the other\n"
            "rows are kept).\n\n"
            "| case | bad input | exit | what the user reads |\n|---|---|---|---|\n")
    path.write_text(head + "\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] != ["--write"] or len(sys.argv) < 3:
        sys.exit("usage: python tests/test_bad_inputs.py --write docs/bad-inputs.md [CASE ...]")
    write_table(Path(sys.argv[2]), Path(os.environ.get(DATA_ENV) or REPO.parent / "shared" / "data"), sys.argv[3:])
