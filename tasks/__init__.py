"""The task registry: every `tasks/**/*.yaml` file declares one task; Python hooks live beside it.

A declaration names its data files (with checksums and upstream source), the columns it reads, its split rule, the
prompt template and answer format, the parser and the metrics with their direction; a Python `loader` hook turns the
files into rows. Files whose name starts with `_` are shared bases that other files `include:` (a family of
per-language tasks is one base plus one small file per language). Tasks belong to `groups` (e.g. `paper`), which
the config can select by name. `get_task(name)` answers an unknown name with the closest known ones.

Registration checks every file and records a file it cannot use as a `TaskFileError` (one line naming the file, and
the line for a YAML syntax error) instead of raising, so that one broken file does not stop runs of other tasks:
`get_task` / `expand` raise the recorded error only for a name that a broken file would define (or, for an unknown
name, mention the broken files), and `scd tasks list` prints them. Checked at registration: the YAML, the keys, the
name (`[a-z0-9_]+`, the workflow's wildcard), one file per name, the loader (`module:function`, the module found by
`importlib.util.find_spec` and the function defined at its top level, read from the source: nothing is imported),
the parser, the metrics (name, parameters, and each metric's assumptions about the task, e.g. the entity types of
its labels) and the options' declared defaults. `load_registry(folder)` builds a registry from any folder;
`registry()` is the cached one of this package.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import yaml

from scd.dicts import deep_merge
from scd.registry import Registry, UnknownNameError, did_you_mean
from tasks import metrics, parsers
from tasks.readers import TaskDataError, TaskDataWarning

TASK_DIR = Path(__file__).parent
SPLITS = ("train", "validation", "test")
TRANSFER = "transfer"  # optional split: unlabelled prompts for distillation (teacher outputs become the targets)

NAME = re.compile(r"[a-z0-9_]+")  # task names are Snakemake wildcards constrained to this pattern

__all__ = ["Task", "TaskDataError", "TaskDataWarning", "TaskFileError", "TaskRegistry", "SPLITS", "TRANSFER",
           "broken_task_files", "get_task", "list_tasks", "task_groups", "expand", "load_registry", "registry"]



@dataclass
class Task:
    name: str
    description: str
    loader: str                      # "module:function" returning {split: [row, ...]}
    metrics: list                    # names or {name, as, direction, **params}; the first is the headline metric
    evaluation: dict                 # {mode: generate|choices, max_new_tokens, choices, benchmark: {mode,
    #                                  max_new_tokens}: the benchmark's own protocol where it differs from `mode`}
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
    known_overlap: dict | None = None     # {validation|test: n}: rows whose prompt is also a train prompt upstream
    allow_duplicates: dict | None = None  # {split: n}: rows repeating an earlier row's id in that split upstream
    path: Path | None = None

    # -- options ---------------------------------------------------------------------------------------------
    def check_options(self, opts: dict) -> dict:
        """The declared options updated with `opts`; every value checked against its option's declared type (see
        `option_problem`), so a bad value fails at config validation, naming the option."""
        if not isinstance(opts, dict):
            raise ValueError(f"task {self.name!r}: task_options must be a mapping {{option: value}}, got {opts!r}")
        unknown = sorted(set(opts) - set(self.options))
        if unknown:
            hints = "".join(did_you_mean(k, self.options) for k in unknown)
            raise ValueError(f"task {self.name!r} has no option {', '.join(map(repr, unknown))}.{hints} "
                             f"Its options: {', '.join(sorted(self.options)) or '(none)'}.")
        for key, value in opts.items():
            problem = option_problem(key, value, self.options[key])
            if problem:
                raise ValueError(f"task {self.name!r} option {key!r} {problem}")
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
        for split in SPLITS:  # caps for quick runs (smoke, tests), where a task declares them (positive or None)
            if opts.get(f"max_{split}") is not None and split in splits:
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
        self.split_checks(splits)
        return splits

    def split_checks(self, splits: dict[str, list[dict]], warn: bool = True) -> dict:
        """Duplicate ids within each split and leakage into train, counted:
        {"duplicate_ids": {split: rows repeating an earlier row's id}, "train_overlap": {validation|test:
        {"prompt": rows whose prompt text is also a train prompt, "prompt_answer": ... with the same answer too}}}.

        A count above the one the declaration allows (`allow_duplicates` / `known_overlap`, default 0) is a
        TaskDataError; a nonzero count within it (a public data set that has them) is a TaskDataWarning. The
        prepare stage records these counts in its manifest (key `data_checks`; `load` has warned already, so it
        passes warn=False)."""
        ids = {split: Counter(str(r["id"]) for r in splits[split]) for split in (*SPLITS, TRANSFER)
               if splits.get(split)}
        dups = {split: sum(n - 1 for n in counts.values()) for split, counts in ids.items()}
        train = {r["prompt"] for r in splits["train"]}
        train_pa = {(r["prompt"], r["answer"]) for r in splits["train"]}
        overlap = {split: {"prompt": sum(r["prompt"] in train for r in splits[split]),
                           "prompt_answer": sum((r["prompt"], r["answer"]) in train_pa for r in splits[split])}
                   for split in ("validation", "test")}
        where = _shown(self.path, TASK_DIR) if self.path else "the task's YAML file"
        problems, known = [], []
        for split, n in dups.items():
            allowed = (self.allow_duplicates or {}).get(split, 0)
            if n > allowed:
                examples = [i for i, c in ids[split].items() if c > 1][:3]
                problems.append(f"{n} {split} row(s) repeat an earlier id (e.g. {examples}; allowed: {allowed})")
            elif n:
                known.append(f"{n} duplicate id(s) in {split}")
        for split, c in overlap.items():
            allowed = (self.known_overlap or {}).get(split, 0)
            if c["prompt"] > allowed:
                problems.append(f"{c['prompt']} {split} row(s) repeat a train prompt ({c['prompt_answer']} with its "
                                f"answer; allowed: {allowed})")
            elif c["prompt"]:
                known.append(f"{c['prompt']} {split} prompt(s) also in train")
        if problems:
            raise TaskDataError(f"task {self.name!r}: {'; '.join(problems)}. Check the data "
                                f"(`scd data verify {self.name}`); if the public data set genuinely has them, "
                                f"declare `allow_duplicates: {{split: n}}` / `known_overlap: {{split: n}}` in "
                                f"{where}")
        if known and warn:
            warnings.warn(f"task {self.name!r}: {', '.join(known)} (declared in {where} as known in the public "
                          f"data)", TaskDataWarning, stacklevel=3)
        return {"duplicate_ids": dups, "train_overlap": overlap}

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
                f"task {self.name!r}: data not found: {', '.join(missing)} missing in {folder.resolve()}. "
                f"The data comes from github.com/{src.get('repo', '?')} at commit {src.get('commit', '?')}; "
                f"`scd data fetch {self.name}` downloads and verifies it. "
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

    def parse(self, text: str, parser: str | None = None):
        """The answer in `text` as the task's parser reads it (or `parser`'s, e.g. a benchmark protocol's)."""
        return parsers.get(parser or self.parser)(text, self)

    @property
    def positions(self) -> int:
        """Positions a model needs: the longest training sequence, then generation's new tokens after a prompt
        (the larger budget of the task's mode and of its benchmark's own protocol)."""
        benchmark = self.evaluation.get("benchmark") or {}
        return self.max_length + max(self.evaluation.get("max_new_tokens", 0), benchmark.get("max_new_tokens", 0))

    def choices(self) -> list[str]:
        """The options option scoring compares: the declared `evaluation.choices`, else the labels when the answer
        format takes a label (labels that are tags, as NCBI-disease's BIO set, are no answers: no choices)."""
        if self.evaluation.get("choices"):
            return list(self.evaluation["choices"])
        return list(self.labels or []) if "{label}" in self.answer else []

    def answer_for(self, label: str) -> str:
        """The answer text of one choice, in the task's answer format (option scoring scores these)."""
        return self.answer.format_map({"label": label})

    def gold(self, row: dict):
        """What a parsed prediction is compared with: the row's label, its entity list, else the parsed answer."""
        for key in ("label", "entities"):
            if key in row:
                return row[key]
        return self.parse(row["answer"])


def option_problem(key: str, value, default) -> str | None:
    """What is wrong with `value` for the option `key` declared with `default`, or None.

    A `max_*` option caps a split's rows: a positive integer, or null for no cap (0, negatives, booleans and floats
    are refused: they used to mean "no cap", "drop rows", "keep one row" and a late crash). Any other option takes the
    type of its declared default (an int where a float is expected; a float must be finite), and an integer option
    whose name does not end in `seed` is a count, so not negative. Only `max_*` options may default to null."""
    if key.startswith("max_"):
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return None
        return f"must be a positive integer (a cap on rows) or null (no cap), got {value!r}"
    if default is None:
        return "is declared with the default null, which gives it no type; declare a default value (only max_* caps " \
               "may default to null)"
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and value < 0 and not key.endswith("seed"):
            return f"must be a non-negative integer (a count), got {value!r}"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        return f"must be of type {type(default).__name__} (like its default {default!r}), got {value!r}"
    return None


# -- declarations -> tasks --------------------------------------------------------------------------------------------

class TaskFileError(ValueError, KeyError):
    """A task declaration file cannot be used; the message names the file (and the line, where known). A KeyError
    too, so that a lookup of a name that a broken file defines fails like an unknown name."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


def _shown(path: Path, folder: Path) -> str:
    """A task file as messages name it: relative to the registry folder's parent (tasks/pubmedqa/pubmedqa.yaml)."""
    try:
        return str(path.relative_to(folder.parent))
    except ValueError:
        return str(path)


def _read_spec(path: Path, folder: Path, seen: tuple = ()) -> dict:
    where = _shown(path, folder)
    if path in seen:
        raise TaskFileError(f"{where}: `include` cycle through {[_shown(p, folder) for p in seen]}; remove one include")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskFileError(f"{_shown(seen[-1], folder) if seen else where}: includes {path.name}, which does not "
                            f"exist in {_shown(path.parent, folder)}; fix the `include:` line") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TaskFileError(f"{where}: cannot read the task file ({e}); it must be UTF-8 text") from None
    try:
        try:  # libyaml's parser, with PyYAML's own constructor: the same values, parsed several times faster
            spec = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:  # the pure-Python parser again, for its messages (line, column, problem)
            spec = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise TaskFileError(f"{where}{at}: YAML syntax error: {problem}; fix the file (or move it out of the task "
                            f"folder)") from None
    except yaml.YAMLError as e:
        raise TaskFileError(f"{where}: YAML error: {' '.join(str(e).split())}; fix the file") from None
    spec = {} if spec is None else spec
    if not isinstance(spec, dict):
        raise TaskFileError(f"{where}: a task file must be a YAML mapping of keys, got a {type(spec).__name__}")
    if "include" in spec:  # a shared base in the same folder; this file's keys win (mappings merge)
        base = _read_spec(path.parent / str(spec.pop("include")), folder, seen + (path,))
        spec = deep_merge(base, spec)
    return spec


_NAME_LINE = re.compile(r"^name:\s*[\"']?([^\s\"'#]+)", re.M)
_GROUPS_LINE = re.compile(r"^groups:\s*\[?([^\]#\n]*)", re.M)
_INCLUDE_LINE = re.compile(r"^include:\s*[\"']?([^\s\"'#]+)", re.M)


def _claims(path: Path, depth: int = 0) -> set[str]:
    """The task and group names an unreadable file would define, read line by line (best effort): its `name:` (else
    its file name) and the `groups:` of it and its includes."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {path.stem} if depth == 0 else set()
    out = set()
    if depth == 0:
        m = _NAME_LINE.search(text)
        out.add(m.group(1) if m else path.stem)
    for m in _GROUPS_LINE.finditer(text):
        out |= {g.strip(" \"'") for g in m.group(1).split(",") if g.strip(" \"'")}
    m = _INCLUDE_LINE.search(text)
    if m and depth < 5:
        out |= _claims(path.parent / m.group(1), depth + 1)
    return out


def _top_level_names(origin: str) -> set[str] | str:
    """The functions and names a module's source defines at its top level (the module is not imported), or what
    is wrong with it."""
    try:
        tree = ast.parse(Path(origin).read_bytes(), filename=origin)
    except SyntaxError as e:
        return f"has a syntax error at line {e.lineno}: {e.msg}"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _loader_problem(loader, cache: dict) -> str | None:
    """What is wrong with a `module:function` loader path, found without importing the module, or None."""
    if not isinstance(loader, str) or loader.count(":") != 1 or not all(loader.split(":")):
        return f"loader {loader!r} must be 'module:function' (e.g. 'tasks.pubmedqa.loader:load')"
    module, fn = loader.split(":")
    if module not in cache:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a parent package is missing, or the name is malformed
            spec = None
        if spec is None:
            cache[module] = f"names the module {module!r}, which is not found"
        elif not spec.origin or not spec.origin.endswith(".py"):
            cache[module] = None  # a compiled or namespace module: checked when it is loaded
        else:
            cache[module] = _top_level_names(spec.origin)
    found = cache[module]
    if isinstance(found, str):
        return f"loader {loader!r} {found}" if "module" in found else f"loader module {module!r} {found}"
    if found is not None and fn not in found:
        return f"loader {loader!r}: the module {module!r} defines no {fn!r}"
    return None


def _option_declaration_problems(options) -> list[str]:
    if not isinstance(options, dict):
        return [f"options must be a mapping {{option: default}}, got {options!r}"]
    return [f"option {k!r} {p}" for k, v in options.items() if (p := option_problem(str(k), v, v))]


def _count_map_problem(key: str, value) -> str | None:
    if value is None:
        return None
    good = isinstance(value, dict) and all(k in (*SPLITS, TRANSFER) and isinstance(v, int) and not isinstance(v, bool)
                                           and v >= 0 for k, v in value.items())
    return None if good else f"{key} must map split names to counts (non-negative integers), got {value!r}"


def _metric_problems(task: Task) -> list[str]:
    if not isinstance(task.metrics, list) or not task.metrics:
        return [f"metrics must be a non-empty list of metric names or {{name, as, ...}}, got {task.metrics!r}"]
    bad = [m for m in task.metrics if not isinstance(m, str) and not (isinstance(m, dict) and "name" in m)]
    if bad:
        return [f"metrics: each entry is a metric name or a mapping with a `name`, got {bad[0]!r}"]
    out = []
    for spec in task.metric_specs:
        name, params = spec["name"], spec["params"]
        try:
            fn = metrics.get(name)
        except UnknownNameError as e:
            out.append(str(e))
            continue
        accepted = set(inspect.signature(fn).parameters) - {"preds", "golds", "examples"}
        unknown = sorted(set(params) - accepted)
        if unknown:
            out.append(f"metric {name!r} takes no parameter {', '.join(map(repr, unknown))}."
                       f"{did_you_mean(unknown[0], accepted)} Its parameters: "
                       f"{', '.join(sorted(accepted)) or '(none)'}")
            continue
        check = metrics.METRICS.meta(name).get("check")
        problem = check(task, params) if check else None
        if problem:
            out.append(f"metric {name!r} {problem}")
    return out


def _from_yaml(path: Path, folder: Path, loaders: dict) -> Task:
    spec = _read_spec(path, folder)
    try:
        return _task_from_spec(spec, path, folder, loaders)
    except TaskFileError as e:  # the names it would define, as declared
        groups = spec.get("groups") if isinstance(spec.get("groups"), list) else []
        e.claims = {str(x) for x in [spec.get("name", path.stem), *groups]}
        raise


def _task_from_spec(spec: dict, path: Path, folder: Path, loaders: dict) -> Task:
    where = _shown(path, folder)
    fields = set(Task.__dataclass_fields__) - {"path"}
    unknown = set(spec) - fields
    if unknown:
        raise TaskFileError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(fields)}")
    missing = {"name", "description", "loader", "metrics", "evaluation"} - set(spec)
    if missing:
        raise TaskFileError(f"{where}: missing keys {sorted(missing)}")
    name = spec["name"]
    if not isinstance(name, str) or not NAME.fullmatch(name):
        hint = re.sub(r"[^a-z0-9_]+", "_", str(name).lower()).strip("_")
        raise TaskFileError(f"{where}: task name {name!r} must match [a-z0-9_]+ (lower-case letters, digits, _: the "
                            f"workflow's pattern for task names); rename it, e.g. {hint!r}")
    task = Task(path=path, **spec)
    problems = []
    if not isinstance(task.evaluation, dict) or task.evaluation.get("mode") not in ("generate", "choices"):
        problems.append(f"evaluation must be a mapping with mode 'generate' or 'choices', got {task.evaluation!r}")
    elif _benchmark_problem(task.evaluation.get("benchmark"), task.parser):
        problems.append(_benchmark_problem(task.evaluation.get("benchmark"), task.parser))
    if not isinstance(task.groups, list) or not all(isinstance(g, str) and NAME.fullmatch(g) for g in task.groups):
        problems.append(f"groups must be a list of names matching [a-z0-9_]+, got {task.groups!r}")
    if task.labels is not None and (not isinstance(task.labels, list) or not all(isinstance(x, str)
                                                                                 for x in task.labels)):
        problems.append(f"labels must be a list of strings, got {task.labels!r}")
    problems += [p for p in (_loader_problem(task.loader, loaders),
                             _count_map_problem("known_overlap", task.known_overlap),
                             _count_map_problem("allow_duplicates", task.allow_duplicates)) if p]
    if not isinstance(task.parser, str) or task.parser not in parsers.PARSERS:
        problems.append(_unknown(parsers.PARSERS, str(task.parser)))
    problems += _option_declaration_problems(task.options)
    if not problems:  # the metrics' checks read the labels and parser checked above
        problems += _metric_problems(task)
    if problems:
        raise TaskFileError(f"{where}: {'; '.join(problems)}")
    return task


def _benchmark_problem(spec, task_parser) -> str | None:
    """What is wrong with a task's `evaluation.benchmark` (the benchmark's own protocol), or None."""
    if spec is None:
        return None
    budget = spec.get("max_new_tokens", 0) if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or set(spec) - {"mode", "max_new_tokens", "parser"} or spec.get("mode") not in (
            "generate", "choices") or not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
        return (f"evaluation.benchmark must be a mapping {{mode: generate|choices, max_new_tokens: n, parser: name}} "
                f"(the benchmark's own protocol; n a non-negative integer, parser optional), got {spec!r}")
    parser = spec.get("parser", task_parser)
    if not isinstance(parser, str) or parser not in parsers.PARSERS:
        return f"evaluation.benchmark: {_unknown(parsers.PARSERS, str(parser))}"
    if (parser in metrics.LIST_PARSERS) != (task_parser in metrics.LIST_PARSERS):
        return (f"evaluation.benchmark.parser {parser!r} must give what the task's parser {task_parser!r} gives (a "
                f"list of strings, or one string): the task's metrics score both")
    return None


def _unknown(reg: Registry, name: str) -> str:
    try:
        reg.get(name)
    except UnknownNameError as e:
        return str(e)
    return ""


# -- the registry -----------------------------------------------------------------------------------------------------

@dataclass
class BrokenFile:
    path: Path
    error: TaskFileError
    claims: set[str]  # the task and group names the file would define (a lookup of one of them raises `error`)


class TaskRegistry:
    """The tasks declared by the `*.yaml` files under `folder` (files starting with `_` are bases), and the files
    that could not be used, each with its error."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.tasks: Registry[Task] = Registry("task")
        self.broken: list[BrokenFile] = []
        loaders: dict = {}
        found: dict[str, list[Task]] = {}
        for path in sorted(self.folder.rglob("*.yaml")):
            if path.name.startswith("_"):
                continue
            try:
                task = _from_yaml(path, self.folder, loaders)
            except TaskFileError as e:
                self.broken.append(BrokenFile(path, e, getattr(e, "claims", None) or _claims(path)))
                continue
            found.setdefault(task.name, []).append(task)
        for name, same in found.items():
            if len(same) > 1:
                files = " and ".join(_shown(t.path, self.folder) for t in same)
                error = TaskFileError(f"task {name!r} is declared twice, in {files}; rename one (or remove a copy)")
                self.broken += [BrokenFile(t.path, error, {name, *t.groups}) for t in same]
            else:
                self.tasks.add(name, same[0])
        for name in sorted(set(self.groups()) & set(self.tasks)):
            task = self.tasks.get(name)
            del self.tasks._items[name]
            self.broken.append(BrokenFile(task.path, TaskFileError(
                f"{_shown(task.path, self.folder)}: task name {name!r} is also a group name (in `groups:` of other "
                f"tasks); rename one"), {name, *task.groups}))

    def groups(self) -> dict[str, list[str]]:
        """{group: [task names]} as the declarations' `groups:` say."""
        out: dict[str, list[str]] = {}
        for name, task in self.tasks.items():
            for g in task.groups:
                out.setdefault(g, []).append(name)
        return out

    def _broken_for(self, name: str) -> None:
        for b in self.broken:
            if name in b.claims:
                raise b.error

    def _note(self) -> str:
        if not self.broken:
            return ""
        files = sorted({_shown(b.path, self.folder) for b in self.broken})
        return f" (Unreadable task files, which may define it: {', '.join(files)}; `scd tasks list` says why.)"

    def get(self, name: str) -> Task:
        if name in self.tasks:
            return self.tasks.get(name)
        self._broken_for(name)
        try:
            return self.tasks.get(name)
        except UnknownNameError as e:
            raise UnknownNameError(str(e) + self._note()) from None

    def expand(self, names: list[str]) -> list[str]:
        """Task and group names -> task names, in the order given (a group's tasks in name order), each once. A
        name (or group) that a broken file would define raises that file's error."""
        groups = self.groups()
        out: list[str] = []
        for name in names:
            self._broken_for(name)
            if name in groups:
                members = groups[name]
            elif name in self.tasks:
                members = [name]
            else:
                known = list(self.tasks) + list(groups)
                raise UnknownNameError(f"unknown task or group {name!r}.{did_you_mean(name, known)} "
                                       f"Groups: {', '.join(sorted(groups))}; `scd tasks list` lists the tasks."
                                       f"{self._note()}")
            out += [m for m in members if m not in out]
        return out

    def broken_messages(self) -> list[str]:
        """One line per problem (a broken base included by several files, or a name declared twice, is one)."""
        return list(dict.fromkeys(str(b.error) for b in self.broken))


def load_registry(folder: Path) -> TaskRegistry:
    return TaskRegistry(folder)


@lru_cache(maxsize=1)
def registry() -> TaskRegistry:
    return load_registry(TASK_DIR)


def task_groups(reg: TaskRegistry | None = None) -> dict[str, list[str]]:
    """{group: [task names]} as the declarations' `groups:` say."""
    return (reg or registry()).groups()


def expand(names: list[str]) -> list[str]:
    """Task and group names -> task names, in the order given (a group's tasks in name order), each once."""
    return registry().expand(names)


def get_task(name: str) -> Task:
    return registry().get(name)


def list_tasks() -> list[Task]:
    return [t for _, t in registry().tasks.items()]


def broken_task_files() -> list[str]:
    """The registry's unusable task files, one message each (`scd tasks list` prints them)."""
    return registry().broken_messages()
