"""Experiment configuration: one YAML matrix, overlaid by a profile file and the user's overrides, checked
against `config/schema.json` so that a wrong key or value fails at start with its path in the message."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import jsonschema
import yaml

from scd.dicts import deep_merge
from scd.distill.methods import method_from_config, resolve_spec
from scd.distill.parts import SCHEDULES
from scd.registry import did_you_mean
from tasks import expand, get_task, list_tasks, task_groups
from tasks.datafiles import resolve_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "config"
SCHEMA_PATH = CONFIG_DIR / "schema.json"
DATA_DIR_ENV = "SCD_DATA_DIR"


class ConfigError(ValueError):
    pass


def read_yaml(path: Path) -> dict:
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level, not {type(data).__name__}")
    return data


def _schema() -> dict:
    with open(SCHEMA_PATH) as fh:
        return json.load(fh)


def _describe(err: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        allowed = sorted((err.schema.get("properties") or {}).keys())
        extra = sorted(set(err.instance) - set(allowed))
        hints = "".join(did_you_mean(k, allowed) for k in extra)
        return (f"config key {', '.join(repr(k) for k in extra)} under {where} is not allowed.{hints} "
                f"Allowed keys: {', '.join(allowed)}.")
    return f"config value at {where} is invalid: {err.message}"


def validate(cfg: dict) -> dict:
    """Validate against the JSON schema and the registries of tasks and method parts; return cfg unchanged."""
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n  - ".join(_describe(e) for e in errors)
        raise ConfigError(f"invalid configuration:\n  - {lines}")
    _check_names(cfg)
    return cfg


def _check_names(cfg: dict) -> None:
    problems = []
    try:
        names = expand(cfg["tasks"])
    except KeyError as e:
        problems.append(f"tasks: {e}")
        names = []
    known = set(task_groups()) | {t.name for t in list_tasks()}
    for key in cfg.get("task_overrides") or {}:
        if key not in known:
            problems.append(f"task_overrides.{key}: not a task or group name.{did_you_mean(key, known)}")
    for task in names:
        try:
            get_task(task).check_options(task_config(cfg, task).get("task_options", {}))
        except (KeyError, ValueError) as e:
            problems.append(f"tasks.{task}: {e}")
    for name, spec in cfg["methods"].items():
        try:
            method_from_config(name, spec)
        except (KeyError, ValueError) as e:
            problems.append(f"methods.{name}: {e}")
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def from_command_line(value):
    """Snakemake's `--config key=[0, 1]` reads list items with YAML's BaseLoader, i.e. as strings ('0'); re-read
    each string leaf as a YAML scalar so `seeds='[0]'` means [0]. Strings that are not numbers, booleans or null
    stay strings."""
    if isinstance(value, dict):
        return {k: from_command_line(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_command_line(v) for v in value]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, (bool, int, float)) or parsed is None and value in ("null", "~") \
            else value
    return value


def load_config(profile: str | None = None, overrides: dict | None = None) -> dict:
    """config/config.yaml <- config/<profile>.yaml (if present) <- overrides, then validated."""
    cfg = read_yaml(CONFIG_DIR / "config.yaml")
    profile = profile or (overrides or {}).get("profile") or cfg.get("profile", "default")
    overlay = CONFIG_DIR / f"{profile}.yaml"
    if overlay.exists():
        cfg = deep_merge(cfg, read_yaml(overlay))
    elif profile != "default":
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "config")
        raise ConfigError(f"no config overlay for profile {profile!r} (looked for {overlay}).{did_you_mean(profile, known)}")
    cfg = deep_merge(cfg, overrides or {})
    cfg["profile"] = profile
    validate(cfg)

    # `tasks` may name groups: from here on it lists task names; the selection as written is kept for the record
    cfg["task_selection"], cfg["tasks"] = cfg["tasks"], expand(cfg["tasks"])
    return cfg


def task_config(cfg: dict, task: str) -> dict:
    """The configuration one task's jobs see: global settings, then the overrides of the task's groups (in the
    order `task_overrides` lists them), then the task's own."""

    overrides = cfg.get("task_overrides") or {}
    merged = {k: v for k, v in cfg.items() if k not in ("tasks", "task_selection", "task_overrides")}
    groups = set(get_task(task).groups)
    for key, over in overrides.items():
        if key in groups:
            merged = deep_merge(merged, over or {})
    merged = deep_merge(merged, overrides.get(task) or {})
    merged["task"] = task
    return merged


def data_dir(cfg: dict) -> Path:
    """The task data directory: $SCD_DATA_DIR, else the config key, else the per-user cache (tasks.datafiles)."""
    return resolve_data_dir(cfg.get("data_dir"))[0]


# What each stage reads: a job gets only these keys, so that its Snakemake params (and with them the rerun
# decision) change only when something that stage uses changes. Adding a method never retrains the SFT models.
COMMON_KEYS = ("profile", "results_dir", "mlflow", "threads", "device", "precision", "log_every", "evaluation", "task")


def _model_specs(full: dict, role: str) -> dict:
    """The model spec a job builds `role` from, with the spec it derives from (`derive_from`) beside it."""
    specs = {role: full["models"][role]}
    source = specs[role].get("derive_from")
    if source in full["models"]:
        specs[source] = full["models"][source]
    return specs


def stage_config(cfg: dict, task: str, stage: str, name: str | None = None) -> dict:
    """The configuration of one job: `stage` in prepare | sft | teacher_outputs | distill | evaluate | zero_shot;
    `name` the SFT / zero-shot role or the method."""
    full = task_config(cfg, task)
    out = {k: full[k] for k in COMMON_KEYS if k in full}
    if stage == "prepare":
        out |= {k: full[k] for k in ("data_dir", "tokenizer", "max_length") if k in full}
        # every option with its value, defaults from the task's YAML included: changing a task's default
        # re-prepares its data (and so retrains what depends on it), as changing the config would

        out["task_options"] = get_task(task).check_options(full.get("task_options") or {})
        out["task_fingerprint"] = get_task(task).fingerprint()
        if (full.get("tokenizer") or {}).get("source") == "teacher":
            out["models"] = {"teacher": full["models"]["teacher"]}
    elif stage == "sft":
        out |= {"models": _model_specs(full, name), "training": {name: full["training"][name]}}
        if name == "teacher":
            out["checkpoints"] = full.get("checkpoints", 1)
    elif stage == "teacher_outputs":
        out["training"] = {"distill": {"transfer": full["training"]["distill"].get("transfer", True)}}
    elif stage == "distill":
        out |= {"methods": {name: full["methods"][name]}, "training": {"distill": full["training"]["distill"]}}
        # the student starts from scratch (it needs its spec) or trains with gradient checkpointing (a switch of the
        # spec that a saved model does not carry)
        if full["training"]["distill"].get("init") == "base" or full["models"]["student"].get("gradient_checkpointing"):
            out["models"] = _model_specs(full, "student")
    elif stage == "zero_shot":  # the model before fine-tuning is built from its spec
        out["models"] = _model_specs(full, name)
    elif stage != "evaluate":
        raise ValueError(f"unknown stage {stage!r}")
    return out


ABLATIONS = {  # config key -> (variant name suffix, how a value changes a method's spec)
    "granularity": ("n", lambda spec, n: spec | {"checkpoints": n, "stages": n}),
    "lam": ("lam", lambda spec, v: spec | {"schedule_options": {**spec.get("schedule_options", {}), "lam": v}}),
}


def _effective(spec: dict, cfg: dict) -> dict:
    """A resolved method spec with the defaults it inherits made explicit, so two specs compare equal when they would run
    the same: stages and trajectory size from training.distill, SCD's lambda default."""


    phase = cfg["training"]["distill"]
    out = {"stages": phase.get("stages", 1), "checkpoints": phase.get("checkpoints")} | spec
    defaults = {k: p.default for k, p in inspect.signature(SCHEDULES.get(out["schedule"])).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return out | {"schedule_options": defaults | out.get("schedule_options", {})}


def ablation_plan(cfg: dict) -> dict:
    """The `ablations` switches as variant methods: {"tasks": [...], "variants": {name: spec},
    "axes": {axis: {method: {value: method name}}}}. A variant identical to its base method reuses the base
    method's runs (e.g. N = 4 when the main methods use 4 checkpoints), so nothing runs twice."""

    abl = cfg.get("ablations") or {}
    plan = {"tasks": [], "variants": {}, "axes": {}}
    if not abl:
        return plan
    problems = [f"ablations.tasks: {t!r} is not a configured task.{did_you_mean(t, list(cfg['tasks']))}"
                for t in abl.get("tasks", []) if t not in cfg["tasks"]]
    plan["tasks"] = [t for t in abl.get("tasks", list(cfg["tasks"])) if t in enabled_tasks(cfg)]
    for axis, (suffix, vary) in ABLATIONS.items():
        if axis not in abl:
            continue
        for base in abl[axis]["methods"]:
            if base not in cfg["methods"]:
                problems.append(f"ablations.{axis}.methods: {base!r} is not a configured method."
                                f"{did_you_mean(base, list(cfg['methods']))}")
                continue
            if not cfg["methods"][base].get("enabled", True):
                continue  # a disabled method runs in no variant either
            base_spec = resolve_spec(base, cfg["methods"][base])  # a variant keeps its base's preset
            for value in abl[axis]["values"]:
                spec = vary(base_spec, value)
                name = base if _effective(spec, cfg) == _effective(base_spec, cfg) \
                    else f"{base}.{suffix}{value:g}"
                plan["axes"].setdefault(axis, {}).setdefault(base, {})[value] = name
                if name != base:
                    plan["variants"][name] = spec
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return plan


def enabled_tasks(cfg: dict) -> list[str]:
    return list(cfg["tasks"])


def enabled_methods(cfg: dict) -> list[str]:
    return [m for m, spec in cfg["methods"].items() if spec.get("enabled", True)]
