"""The task registry: every `tasks/**/*.yaml` file declares one task; Python hooks live beside it.

A declaration names its data files (with checksums and upstream source), the columns it reads, its split rule, the
prompt template and answer format, the parser and the metrics with their direction; a Python `loader` hook turns the
files into rows. Files whose name starts with `_` are shared bases that other files `include:` (a family of
per-language tasks is one base plus one small file per language). Tasks belong to `groups` (e.g. `paper`), which
the config can select by name. `get_task(name)` answers an unknown name with the closest known ones.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml

from scd.dicts import deep_merge
from scd.registry import Registry, UnknownNameError, did_you_mean
from tasks import metrics, parsers
from tasks.readers import TaskDataError

TASK_DIR = Path(__file__).parent
SPLITS = ("train", "validation", "test")
TRANSFER = "transfer"  # optional split: unlabelled prompts for distillation (teacher outputs become the targets)

__all__ = ["Task", "TaskDataError", "SPLITS", "TRANSFER", "get_task", "list_tasks", "task_groups", "expand"]


@dataclass
class Task:
    name: str
    description: str
    loader: str                      # "module:function" returning {split: [row, ...]}
    metrics: list                    # names or {name, as, direction, **params}; the first is the headline metric
    evaluation: dict                 # {mode: generate|choices, max_new_tokens, choices, answer_format}
    parser: str = "strip"
    tokenizer: str = "bpe"           # char | bpe
    max_length: int = 256
    groups: list[str] = field(default_factory=list)
    language: str | None = None      # BCP-47-ish code of the task's text (ja, en, eng_Latn, ...)
    labels: list[str] | None = None  # the declared label set of a classification task, in order (ordinal tasks)
    columns: dict | None = None      # the columns / fields the loader reads from its files
    split: dict | None = None        # the split rule: official files, or seeded stratified fractions
    prompt: dict | None = None       # {template, truncate}: template fields come from the loader's rows
    answer: str = "{answer}"         # the target text's format
    subdomains: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    data: dict | None = None         # {subdir, source: {repo, commit, licence}, files: {path: {upstream, sha256}}}
    path: Path | None = None

    # -- options ---------------------------------------------------------------------------------------------
    def check_options(self, opts: dict) -> dict:
        unknown = sorted(set(opts) - set(self.options))
        if unknown:
            hints = "".join(did_you_mean(k, self.options) for k in unknown)
            raise ValueError(f"task {self.name!r} has no option {', '.join(map(repr, unknown))}.{hints} "
                             f"Its options: {', '.join(sorted(self.options)) or '(none)'}.")
        for key, value in opts.items():
            _check_type(self.name, key, value, self.options[key])
        return {**self.options, **opts}

    def fingerprint(self) -> str:
        """sha256 of the declaration (and its includes) and its loader's source: prepared data, prompts and
        max_length follow from them, so a job parameter holding this re-prepares (and retrains) when either changes."""
        h = hashlib.sha256(repr(sorted(self.declaration().items())).encode())
        spec = importlib.util.find_spec(self.loader.partition(":")[0])
        if spec and spec.origin:
            h.update(Path(spec.origin).read_bytes())
        return h.hexdigest()[:16]

    def declaration(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "path"}

    # -- data ------------------------------------------------------------------------------------------------
    def hook(self) -> Callable:
        module, _, fn = self.loader.partition(":")
        return getattr(importlib.import_module(module), fn)

    def load(self, data_dir: Path, opts: dict | None = None) -> dict[str, list[dict]]:
        opts = self.check_options(opts or {})
        if self.data:
            self.check_files(Path(data_dir))
        splits = self.hook()(self, Path(data_dir), opts)
        for split in SPLITS:  # caps for quick runs (smoke, tests), where a task declares them
            if opts.get(f"max_{split}") and split in splits:
                splits[split] = splits[split][: opts[f"max_{split}"]]
        for split in SPLITS:
            rows = splits.get(split)
            if not rows:
                raise TaskDataError(f"task {self.name!r}: split {split!r} is empty; check the task's data files "
                                    f"(`scd data verify {self.name}`) and options")
            for i, row in enumerate(rows):
                missing = {"id", "prompt", "answer"} - set(row)
                if missing:
                    raise TaskDataError(f"task {self.name!r}: {split} row {i} lacks {sorted(missing)}")
                if self.subdomains and row.get("subdomain") not in self.subdomains:
                    raise TaskDataError(f"task {self.name!r}: {split} row {i} has subdomain {row.get('subdomain')!r}, "
                                        f"expected one of {self.subdomains}")
        for i, row in enumerate(splits.get(TRANSFER) or []):
            if "id" not in row or "prompt" not in row:
                raise TaskDataError(f"task {self.name!r}: {TRANSFER} row {i} needs an id and a prompt")
        return splits

    def task_dir(self, data_dir: Path) -> Path:
        return Path(data_dir) / self.data["subdir"]

    def file(self, data_dir: Path, name: str) -> Path:
        return self.task_dir(data_dir) / name

    def check_files(self, data_dir: Path) -> None:
        folder = self.task_dir(data_dir)
        missing = [f for f in self.data["files"] if not (folder / f).is_file()]
        if missing:
            src = self.data.get("source") or {}
            raise TaskDataError(
                f"task {self.name!r}: data not found: {', '.join(missing)} missing in {folder.resolve()}.\n"
                f"The data comes from github.com/{src.get('repo', '?')} at commit {src.get('commit', '?')}; "
                f"`scd data fetch {self.name}` downloads and verifies it.\n"
                f"Or point the data directory at the folder holding '{self.data['subdir']}/': set $SCD_DATA_DIR "
                f"or the config key data_dir (now {Path(data_dir).resolve()}).")

    # -- prompts ---------------------------------------------------------------------------------------------
    def render(self, fields: dict, **extra) -> dict:
        """A row's prompt and answer from the declared templates. The `truncate` field's character span is kept
        (`truncate: {span, keep}`) so that encoding can shorten that field alone when the prompt is too long, which
        keeps the instruction, the question and the options; `keep: start|end` says which end of the field stays
        (see scd/data.py)."""
        template, cut = self.prompt["template"], self.prompt.get("truncate")
        if cut:
            head, marker, tail = template.partition("{" + cut + "}")
            if not marker:
                raise ValueError(f"task {self.name!r}: prompt.truncate names {cut!r}, which the template lacks")
            head, body, tail = head.format_map(fields), str(fields[cut]), tail.format_map(fields)
            row = {"prompt": head + body + tail, "truncate": {"span": [len(head), len(head) + len(body)],
                                                               "keep": self.prompt.get("keep", "start")}}
        else:
            row = {"prompt": template.format_map(fields)}
        return row | {"answer": self.answer.format_map(fields)} | extra

    # -- scoring ---------------------------------------------------------------------------------------------
    @property
    def metric_specs(self) -> list[dict]:
        """[{key, name, direction, params}]; key is how results name the metric (`as:` renames, e.g. kappa)."""
        out = []
        for spec in self.metrics:
            spec = {"name": spec} if isinstance(spec, str) else dict(spec)
            name = spec.pop("name")
            key = spec.pop("as", name)
            direction = spec.pop("direction", None) or metrics.METRICS.meta(name).get("direction", "max")
            out.append({"key": key, "name": name, "direction": direction, "params": spec})
        return out

    @property
    def metric(self) -> str:
        """The headline metric: model selection and the leaderboard's main table use it."""
        return self.metric_specs[0]["key"]

    def scores(self, preds: list, golds: list, examples: list[dict] | None = None) -> dict[str, float]:
        out = {}
        for spec in self.metric_specs:
            fn = metrics.get(spec["name"])
            params = dict(spec["params"])
            accepted = inspect.signature(fn).parameters
            if "labels" in accepted and "labels" not in params and self.labels:
                params["labels"] = self.labels
            if "examples" in accepted:
                params["examples"] = examples
            out[spec["key"]] = float(fn(preds, golds, **params))
        return out

    def score(self, preds: list, golds: list, examples: list[dict] | None = None) -> float:
        return self.scores(preds, golds, examples)[self.metric]

    def parse(self, text: str):
        return parsers.get(self.parser)(text, self)

    @property
    def positions(self) -> int:
        """Positions a model needs: the longest training sequence, then generation's new tokens after a prompt."""
        return self.max_length + self.evaluation.get("max_new_tokens", 0)

    def choices(self) -> list[str]:
        return self.evaluation.get("choices") or list(self.labels or [])

    def answer_for(self, label: str) -> str:
        """The answer text of one choice, in the task's answer format (option scoring scores these)."""
        return self.answer.format_map({"label": label})

    def gold(self, row: dict):
        """What a parsed prediction is compared with: the row's label, its entity list, else the parsed answer."""
        for key in ("label", "entities"):
            if key in row:
                return row[key]
        return self.parse(row["answer"])


def _check_type(task: str, key: str, value, default) -> None:
    """An option takes the type of its declared default (int where a float is expected; anything if None)."""
    if default is None or value is None:
        return
    expected = (int, float) if isinstance(default, float) else type(default)
    if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
        raise ValueError(f"task {task!r} option {key!r} must be of type {type(default).__name__} "
                         f"(like its default {default!r}), got {value!r}")


def _read_spec(path: Path, seen: tuple = ()) -> dict:
    if path in seen:
        raise ValueError(f"{path}: `include` cycle through {[str(p) for p in seen]}")
    with open(path, encoding="utf-8") as fh:
        spec: dict[str, Any] = yaml.safe_load(fh) or {}
    if "include" in spec:  # a shared base in the same folder; this file's keys win (mappings merge)
        base = _read_spec(path.parent / spec.pop("include"), seen + (path,))
        spec = deep_merge(base, spec)
    return spec


def _from_yaml(path: Path) -> Task:
    spec = _read_spec(path)
    fields = set(Task.__dataclass_fields__) - {"path"}
    unknown = set(spec) - fields
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(fields)}")
    missing = {"name", "description", "loader", "metrics", "evaluation"} - set(spec)
    if missing:
        raise ValueError(f"{path}: missing keys {sorted(missing)}")
    task = Task(path=path, **spec)
    for m in task.metric_specs:
        metrics.get(m["name"])  # an unknown metric fails at registry load, with "did you mean"
    parsers.get(task.parser)
    return task


@lru_cache(maxsize=1)
def registry() -> Registry[Task]:
    reg: Registry[Task] = Registry("task")
    for path in sorted(TASK_DIR.rglob("*.yaml")):
        if not path.name.startswith("_"):
            task = _from_yaml(path)
            reg.add(task.name, task)
    clash = set(task_groups(reg)) & set(reg)
    if clash:
        raise ValueError(f"group names {sorted(clash)} are also task names; rename one")
    return reg


def task_groups(reg: Registry[Task] | None = None) -> dict[str, list[str]]:
    """{group: [task names]} as the declarations' `groups:` say."""
    out: dict[str, list[str]] = {}
    for name, task in (reg or registry()).items():
        for g in task.groups:
            out.setdefault(g, []).append(name)
    return out


def expand(names: list[str]) -> list[str]:
    """Task and group names -> task names, in the order given (a group's tasks in name order), each once."""
    groups = task_groups()
    out: list[str] = []
    for name in names:
        if name in groups:
            members = groups[name]
        elif name in registry():
            members = [name]
        else:
            known = list(registry()) + list(groups)
            raise UnknownNameError(f"unknown task or group {name!r}.{did_you_mean(name, known)} "
                                   f"Groups: {', '.join(sorted(groups))}; `scd tasks list` lists the tasks.")
        out += [m for m in members if m not in out]
    return out


def get_task(name: str) -> Task:
    return registry().get(name)


def list_tasks() -> list[Task]:
    return [t for _, t in registry().items()]
