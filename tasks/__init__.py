"""The task registry: every `tasks/*.yaml` file declares one task; Python hooks live beside it.

A task file names its data (or a generator), its prompt format, how answers are produced and parsed, and the metric.
`get_task(name)` looks a task up and answers an unknown name with the closest known ones.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml

from scd.registry import Registry, did_you_mean
from tasks import metrics, parsers

TASK_DIR = Path(__file__).parent
SPLITS = ("train", "validation", "test")
TRANSFER = "transfer"  # optional split: unlabelled prompts for distillation (teacher outputs become the targets)


class TaskDataError(ValueError):
    """Task data is missing or malformed; the message says where and how to fix it."""


@dataclass
class Task:
    name: str
    description: str
    loader: str                      # "module:function" returning {split: [example, ...]}
    metric: str
    evaluation: dict                 # {mode: generate|choices, max_new_tokens, choices}
    parser: str = "strip"
    tokenizer: str = "bpe"           # char | bpe
    max_length: int = 256
    subdomains: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    data: dict | None = None         # {subdir, files, source, licence}: where real data lives and comes from
    path: Path | None = None

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
        """sha256 of the declaration and its loader's source: prepared data, prompts and max_length follow from
        them, so a job parameter holding this re-prepares (and retrains) when either changes."""
        h = hashlib.sha256(self.path.read_bytes() if self.path else repr(self).encode())
        spec = importlib.util.find_spec(self.loader.partition(":")[0])
        if spec and spec.origin:
            h.update(Path(spec.origin).read_bytes())
        return h.hexdigest()[:16]

    def hook(self) -> Callable:
        module, _, fn = self.loader.partition(":")
        return getattr(importlib.import_module(module), fn)

    def load(self, data_dir: Path, opts: dict | None = None) -> dict[str, list[dict]]:
        opts = self.check_options(opts or {})
        if self.data:
            self.check_files(Path(data_dir))
        splits = self.hook()(self, Path(data_dir), opts)
        for split in SPLITS:
            rows = splits.get(split)
            if not rows:
                raise TaskDataError(f"task {self.name!r}: split {split!r} is empty; check the task's data and options")
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

    def check_files(self, data_dir: Path) -> None:
        folder = self.task_dir(data_dir)
        missing = [f for f in self.data["files"] if not (folder / f).is_file()]
        if missing:
            raise TaskDataError(
                f"task {self.name!r}: data not found: {', '.join(missing)} missing in {folder.resolve()}.\n"
                f"Expected files: {', '.join(self.data['files'])}.\n"
                f"The data comes from {self.data.get('source', '(source not recorded)')}.\n"
                f"Point the data directory at the folder holding '{self.data['subdir']}/': set $SCD_DATA_DIR "
                f"or the config key data_dir (now {Path(data_dir).resolve()}).")

    def score(self, preds: list[str], golds: list[str]) -> float:
        return metrics.get(self.metric)(preds, golds)

    def parse(self, text: str) -> str:
        return parsers.get(self.parser)(text, self)


def _check_type(task: str, key: str, value, default) -> None:
    """An option takes the type of its declared default (int where a float is expected; anything if None)."""
    if default is None or value is None:
        return
    expected = (int, float) if isinstance(default, float) else type(default)
    if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
        raise ValueError(f"task {task!r} option {key!r} must be of type {type(default).__name__} "
                         f"(like its default {default!r}), got {value!r}")


def _from_yaml(path: Path) -> Task:
    with open(path) as fh:
        spec: dict[str, Any] = yaml.safe_load(fh)
    fields = set(Task.__dataclass_fields__) - {"path"}
    unknown = set(spec) - fields
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(fields)}")
    return Task(path=path, **spec)


@lru_cache(maxsize=1)
def registry() -> Registry[Task]:
    reg: Registry[Task] = Registry("task")
    for path in sorted(TASK_DIR.glob("*.yaml")):
        task = _from_yaml(path)
        reg.add(task.name, task)
    return reg


def get_task(name: str) -> Task:
    return registry().get(name)


def list_tasks() -> list[Task]:
    return [t for _, t in registry().items()]
