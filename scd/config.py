"""Experiment configuration: one YAML matrix, overlaid by a profile file and the user's overrides, checked
against `config/schema.json` so that a wrong key or value fails at start with its path in the message."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import jsonschema
import yaml

from scd.dicts import deep_merge
from scd.distill.methods import explicit_options, method_from_config, method_spec, resolve_spec, uneven_stages
from scd.distill.parts import METHODS
from scd.distill.plugins import broken_plugins
from scd.distill.trajectory import checkpoint_names, used_checkpoints
from scd.fingerprint import code_fingerprint, method_plugins
from scd.layout import Layout
from scd.models import model_spec
from scd.registry import did_you_mean
from scd.settings import STAGES, DistillTraining, Job, Optimization, Report, SettingsError, build
from tasks import expand, get_task, list_tasks, registry, task_groups
from tasks.datafiles import declared_files, resolve_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "config"
WORKFLOW_PROFILES = REPO_ROOT / "profiles"  # Snakemake workflow profiles (profiles/<name>/config.yaml)
SCHEMA_PATH = CONFIG_DIR / "schema.json"
DATA_DIR_ENV = "SCD_DATA_DIR"


class ConfigError(ValueError):
    pass


def read_yaml(path: Path) -> dict:
    try:
        text = Path(path).read_text()
        try:  # libyaml's parser, PyYAML's constructor: the same values, faster
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        except yaml.YAMLError:  # the pure-Python parser again, for its message
            data = yaml.safe_load(text) or {}
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


def _problems(problems: list[str]) -> str:
    """One problem on one line; several, a line each."""
    if len(problems) == 1:
        return f"invalid configuration: {problems[0]}"
    return "invalid configuration:\n  - " + "\n  - ".join(problems)


def validate(cfg: dict) -> dict:
    """Validate against the JSON schema and the registries of tasks and method parts; return cfg unchanged."""
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError(_problems([_describe(e) for e in errors]))
    _check_names(cfg)
    _check_distill_jobs(cfg)
    _check_prompt_formats(cfg)
    return cfg


def _check_prompt_formats(cfg: dict) -> None:
    """`prompt_format: chat` needs a tokenizer with a chat template: a tokenizer trained on the task has none."""
    tokenizers = {t: task_config(cfg, t).get("tokenizer") or {} for t in expand(cfg["tasks"])}
    bad = [t for t, tok in tokenizers.items() if tok.get("prompt_format") == "chat"
           and tok.get("source", "train") != "teacher"]
    if bad:
        raise ConfigError(f"invalid configuration: tokenizer.prompt_format chat for {', '.join(bad)}, whose tokenizer "
                          f"is trained on the task (tokenizer.source: train) and has no chat template; use plain or "
                          f"auto, or the teacher's tokenizer (tokenizer.source: teacher)")


def _check_distill_jobs(cfg: dict) -> None:
    """Every distillation job the configuration makes (each task x each run method, and each ablation variant on
    the ablation tasks) splits its epochs evenly into its stages, and every variant's method builds. A problem with
    one cause is reported once, naming the tasks and methods it hits."""
    tasks = expand(cfg["tasks"])
    methods = {m: {} for m in cfg["run_methods"]} | cfg["methods"]  # a preset run under its own name
    plan = ablation_plan(cfg | {"tasks": tasks, "methods": methods})
    variant_of = {v: (axis, base) for axis, by_base in plan["axes"].items() for base, by_value in by_base.items()
                  for v in by_value.values()}
    jobs = [(t, m, resolve_spec(m, methods[m])) for t in tasks for m in cfg["run_methods"]]
    jobs += [(t, m, spec) for t in plan["tasks"] for m, spec in plan["variants"].items()]
    oracles = oracle_plan(cfg | {"tasks": tasks, "methods": methods})
    variant_of |= {r: ("oracles", base) for by_base in oracles["tasks"].values() for base, rows in by_base.items()
                   for r in [*rows["fixed"], rows["reversed"]] if r in oracles["variants"]}
    jobs += [(t, m, oracles["variants"][m]) for t in oracles["tasks"] for m in oracle_rows(cfg, t)]
    problems: dict[str, tuple[dict, dict]] = {}  # problem -> (tasks, methods), as ordered sets
    for name, spec in plan["variants"].items():
        try:
            method_from_config(name, spec)
        except (KeyError, ValueError) as e:
            problems.setdefault(f"ablations.{variant_of[name][0]}: variant {name!r}: {e}", ({}, {}))
    phases = {t: task_config(cfg, t)["training"]["distill"] for t in dict.fromkeys(tasks + plan["tasks"])}
    for task, method, spec in jobs:
        phase = phases[task]
        if not isinstance(phase.get("epochs"), int):
            continue  # stage_config names that
        axis, base = variant_of.get(method, (None, method))
        key = "ablations.granularity.values" if axis == "granularity" else \
            f"methods.{base}.stages" if spec.get("stages") else "training.distill.stages"
        problem = uneven_stages(phase["epochs"], spec.get("stages") or phase.get("stages", DistillTraining.stages),
                                key) or _fixed_checkpoint_problem(cfg, task, base, spec)
        if problem:
            hit = problems.setdefault(problem, ({}, {}))
            hit[0][task], hit[1][method] = None, None
    lines = [p if not ts else f"{_named('task', list(ts))}, "
             f"{'every method' if set(cfg['run_methods']) <= set(ms) else _named('method', list(ms))}: {p}"
             for p, (ts, ms) in problems.items()]
    if lines:
        raise ConfigError(_problems(lines))


def _fixed_checkpoint_problem(cfg: dict, task: str, name: str, spec: dict) -> str | None:
    """A `fixed` schedule whose checkpoint k is past the task's trajectory (its N checkpoints)."""
    k = (spec.get("schedule_options") or {}).get("checkpoint")
    if spec.get("schedule") != "fixed" or not isinstance(k, int):
        return None
    n = _trajectory_size(cfg, task, spec.get("trajectory"))
    if k <= n:
        return None
    return (f"methods.{name}.schedule_options.checkpoint: {k} is past the trajectory's {n} checkpoints; set it to "
            f"1..{n} (N is T*) or read more checkpoints (training.distill.trajectory)")


def _named(kind: str, names: list) -> str:
    return f"{kind}{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}"


def _check_names(cfg: dict) -> None:
    problems = []
    try:
        names = expand(cfg["tasks"])
    except KeyError as e:
        problems.append(f"tasks: {e}")
        names = []
    known = set(task_groups()) | {t.name for t in list_tasks()}
    claimed = {n for b in registry().broken for n in b.claims}  # names of unusable task files: unused here, or
    for key in cfg.get("task_overrides") or {}:                 # `tasks` above already said what is wrong
        if key not in known and key not in claimed:
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
            if broken_plugins() and name not in cfg["run_methods"]:
                continue  # a method this run does not use, most likely from the broken plugin (announced at load)
            msg = str(e) if str(e).startswith(f"methods.{name}.") else f"methods.{name}: {e}"  # the key once
            problems.append(msg)  # an unknown part's name comes with the plugins that failed to load
    for name in cfg["run_methods"]:
        if name not in cfg["methods"] and name not in METHODS:
            problems.append(f"run_methods: {name!r} is neither defined under `methods` nor a registered preset."
                            f"{did_you_mean(name, list(dict.fromkeys([*cfg['methods'], *METHODS])))}")
    if problems:
        raise ConfigError(_problems(problems))


def from_command_line(value):
    """Snakemake's `--config key=[0, 1]` reads list items with YAML's BaseLoader, i.e. as strings ('0'); re-read
    each string leaf as a YAML scalar so `seeds='[0]'` means [0]. Strings that are not numbers, true/false or null
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
        if isinstance(parsed, bool) and value.lower() not in ("true", "false"):
            return value  # YAML 1.1's yes/no/on/off stay strings: the schema then says what it expects
        return parsed if isinstance(parsed, (bool, int, float)) or parsed is None and value in ("null", "~") \
            else value
    return value


def _overlay(profile: str, seen: tuple = ()) -> dict:
    """config/<profile>.yaml over the profile it `extends` (if any)."""
    path = CONFIG_DIR / f"{profile}.yaml"
    if profile == "config" or not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem not in ("config", "schema"))
        raise ConfigError(f"no config overlay for profile {profile!r} (looked for {path})."
                          f"{did_you_mean(profile, known)}")
    if profile in seen:
        raise ConfigError(f"config/{profile}.yaml: `extends` cycle through {' -> '.join(seen + (profile,))}")
    overlay = read_yaml(path)
    parent = overlay.pop("extends", None)
    return deep_merge(_overlay(parent, seen + (profile,)), overlay) if parent else overlay


def _lineage(profile: str) -> list[str]:
    """The profiles `profile` extends, nearest first."""
    parent = read_yaml(CONFIG_DIR / f"{profile}.yaml").get("extends")
    return [parent] + _lineage(parent) if parent else []


def workflow_profile_config(profile_dir: Path | None, search: list[Path] = ()) -> dict:
    """A Snakemake workflow profile's configfile(s) and `config:` entries as one dict (configfile first), as the
    workflow lays them under its command line's --config. A configfile is looked up in the profile directory, then
    in `search` (the invocation directory, the repository). None: {}."""
    from snakemake.cli import parse_config  # third-party, only for a workflow profile's `config:` entries

    if profile_dir is None:
        return {}
    spec = read_yaml(Path(profile_dir) / "config.yaml")
    out: dict = {}
    files = spec.get("configfile") or spec.get("configfiles") or []
    for f in [files] if isinstance(files, str) else files:
        found = next((d / f for d in (Path(profile_dir), *map(Path, search)) if (d / f).is_file()), None)
        if found is None:
            raise ConfigError(f"workflow profile {profile_dir}: its configfile {f} was not found")
        out = deep_merge(out, read_yaml(found))
    entries = spec.get("config") or []
    if isinstance(entries, dict):
        entries = [f"{k}={v}" for k, v in entries.items()]
    return deep_merge(out, parse_config(entries))


def workflow_profile_dir(name: str) -> Path | None:
    """The repository's workflow profile `profiles/<name>`, if it has one."""
    found = WORKFLOW_PROFILES / name
    return found if (found / "config.yaml").is_file() else None


def load_workflow_config(name: str, entries: list[str] = ()) -> dict:
    """The configuration `snakemake --workflow-profile profiles/<name> --config <entries>` runs with, loaded as the
    Snakefile loads it (the profile's configfile and `config:` entries under the entries); without such a workflow
    profile, config profile `name` with the entries (`snakemake --config profile=<name> <entries>`). Entries are
    KEY=VALUE strings as Snakemake's --config takes them (e.g. "tasks=[pubmedqa]")."""
    from snakemake.cli import parse_config  # third-party: only for KEY=VALUE entries

    profile_dir = workflow_profile_dir(name)
    base = workflow_profile_config(profile_dir, [Path.cwd(), REPO_ROOT]) if profile_dir else {"profile": name}
    try:
        given = deep_merge(base, parse_config(list(entries)))
    except ValueError as e:  # Snakemake's own message names the rule, not the entry
        raise ConfigError(f"--config {' '.join(entries)}: {e} (give KEY=VALUE entries, e.g. tasks='[pubmedqa]')") \
            from None
    return load_config(given.get("profile"), overrides=from_command_line(given))


def load_config(profile: str | None = None, overrides: dict | None = None) -> dict:
    """config/config.yaml <- config/<profile>.yaml (over the profile it extends) <- overrides, then validated."""
    cfg = read_yaml(CONFIG_DIR / "config.yaml")
    profile = profile or (overrides or {}).get("profile") or cfg.get("profile", "default")
    cfg = deep_merge(cfg, _overlay(profile))
    overrides = dict(overrides or {})
    extends = overrides.pop("extends", None)  # an overlay given as --configfile names the profile it builds on
    if extends is not None and extends != profile and extends not in _lineage(profile):
        raise ConfigError(f"the overrides say `extends: {extends}` but the profile is {profile!r}: run them with "
                          f"`--config profile={extends}` (or the workflow profile that sets it)")
    cfg = deep_merge(cfg, overrides)
    cfg["profile"] = profile
    validate(cfg)
    for name in cfg["run_methods"]:  # a preset run under its own name needs no entry of its own
        cfg["methods"].setdefault(name, {})

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


def data_dir(cfg: dict | None) -> Path:
    """The task data directory: $SCD_DATA_DIR, else the config key, else the per-user cache (tasks.datafiles)."""
    return resolve_data_dir((cfg or {}).get("data_dir"))[0]


def data_inputs(cfg: dict, task: str) -> list[str]:
    """The absolute paths of the raw data files `task` declares, in its resolved data directory ($SCD_DATA_DIR,
    else its data_dir, else the per-user cache): the inputs of its prepare job, so that a changed file
    re-prepares. [] for a task without data (generated examples). The files need not exist yet (the per-user cache
    is filled at the start of a run)."""
    root = resolve_data_dir(task_config(cfg, task).get("data_dir"))[0]
    return [os.path.abspath(f.path(root)) for f in declared_files(get_task(task))]


# What every job reads (scd.settings.Job); each stage adds its own part. A job's params are exactly its stage's
# settings, so a change reruns only the jobs that read it: adding a method never retrains the SFT models.
COMMON_KEYS = tuple(f.name for f in dataclasses.fields(Job) if f.name != "task")


def _model_spec(full: dict, role: str) -> dict:
    """The spec `role` is built from (scd.models.model_spec: a derived student's base under `base`)."""
    try:
        return model_spec(full["models"], role)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _phase(training: dict, cls: type, where: str):
    try:
        return build(cls, training, where)
    except SettingsError as e:
        raise ConfigError(f"invalid configuration: {e}") from None


def common_settings(cfg: dict, task: str = "") -> Job:
    """The settings every job reads, e.g. for the workflow's own MLflow parent run."""
    return build(Job, {k: cfg[k] for k in COMMON_KEYS if k in cfg} | {"task": task})


def report_settings(cfg: dict) -> Report:
    """The report's settings (`report` section; scd/settings.py Report declares the defaults)."""
    return build(Report, cfg.get("report") or {}, "report")


def stage_config(cfg: dict, task: str, stage: str, name: str | None = None) -> Job:
    """The settings of one job: `stage` in prepare | sft | teacher_outputs | distill | evaluate | zero_shot;
    `name` the SFT / zero-shot role or the method."""
    full = task_config(cfg, task)
    out = {k: full[k] for k in COMMON_KEYS if k in full} | {"task": task}
    if stage == "prepare":
        out |= {k: full[k] for k in ("data_dir", "tokenizer", "max_length", "allow_modified_data") if k in full}
        # every option with its value, defaults from the task's YAML included: changing a task's default
        # re-prepares its data (and so retrains what depends on it), as changing the config would
        out["task_options"] = get_task(task).check_options(full.get("task_options") or {})
        out["task_fingerprint"] = get_task(task).fingerprint()
        if (full.get("tokenizer") or {}).get("source") == "teacher":
            out["teacher"] = full["models"]["teacher"]
    elif stage == "sft":
        phase = dict(full["training"][name])
        save = phase.pop("save_checkpoints", 1)
        out |= {"role": name, "model": _model_spec(full, name),
                "training": _phase(phase, Optimization, f"training.{name}"),
                "save_checkpoints": save if name == "teacher" else 0}
    elif stage == "teacher_outputs":
        out["transfer"] = full["training"]["distill"].get("transfer", DistillTraining.transfer)
        out["trajectories"] = distill_trajectories(cfg, task)
    elif stage == "distill":
        training = _phase(full["training"]["distill"], DistillTraining, "training.distill")
        out |= {"method": name, "spec": method_spec(name, full["methods"][name]), "training": training}
        # the student starts from scratch (it needs its spec) or trains with gradient checkpointing (a switch of the
        # spec that a saved model does not carry)
        if training.init == "base" or full["models"]["student"].get("gradient_checkpointing"):
            out["student"] = _model_spec(full, "student")
    elif stage == "zero_shot":  # the model before fine-tuning is built from its spec
        out |= {"role": name, "model": _model_spec(full, name)}
    elif stage != "evaluate":
        raise ValueError(f"unknown stage {stage!r}")
    out["code"] = code_fingerprint(stage, out.get("spec"))
    if stage == "distill":
        out["plugins"] = {p.name: p.version for p in method_plugins(out["spec"])}
    try:
        return build(STAGES[stage], out, stage)
    except SettingsError as e:
        raise ConfigError(f"invalid configuration for task {task!r}: {e}") from None


ABLATIONS = {  # config key -> (variant name suffix, how a value changes a method's spec)
    "granularity": ("n", lambda spec, n: spec | {"trajectory": n, "stages": n}),
    "lam": ("lam", lambda spec, v: spec | {"schedule_options": {**spec.get("schedule_options", {}), "lam": v}}),
}


def _effective(spec: dict, cfg: dict) -> dict:
    """A resolved method spec with what it inherits made explicit (stages and trajectory size from
    training.distill, its parts' declared option defaults), so two specs compare equal when they would run the
    same."""
    phase = cfg["training"]["distill"]
    out = spec | {"stages": spec.get("stages") or phase.get("stages", DistillTraining.stages),
                  "trajectory": spec.get("trajectory") or phase.get("trajectory", DistillTraining.trajectory)}
    return explicit_options(out)


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
            if base not in cfg["run_methods"]:
                continue  # a method the profile does not run runs in no variant either
            base_spec = resolve_spec(base, cfg["methods"][base])  # a variant keeps its base's preset
            for value in abl[axis]["values"]:
                spec = vary(base_spec, value)
                name = base if _effective(spec, cfg) == _effective(base_spec, cfg) \
                    else f"{base}.{suffix}{value:g}"
                plan["axes"].setdefault(axis, {}).setdefault(base, {})[value] = name
                if name != base:
                    plan["variants"][name] = spec
    if problems:
        raise ConfigError(_problems(problems))
    return plan


def oracle_plan(cfg: dict) -> dict:
    """The `oracles` switch as rows: {"tasks": {task: {base: {"fixed": [name per checkpoint k = 1..N],
    "reversed": name}}}, "variants": {name: spec}}. For each base method (e.g. `cd`) and task, one row per
    checkpoint of the task's trajectory (`<base>.ckpt<k>`: schedule `fixed`, every stage from checkpoint k) and CD
    reversed (`<base>.reversed`), each otherwise the base's spec: the best of them is the ceiling a schedule that
    keeps one checkpoint reaches. The row k = N (T*) is a run method when one runs the same spec with schedule
    `best` (TD for base `cd`): it reuses that method's runs, so nothing runs twice. A base method the profile
    does not run gets no oracle rows (the smoke profile runs no CD, so the default profile's oracles skip it)."""
    orc = cfg.get("oracles") or {}
    plan: dict = {"tasks": {}, "variants": {}}
    if not orc:
        return plan
    configured, problems, chosen = expand(cfg["tasks"]), [], []
    for t in orc.get("tasks", configured):  # task or group names, as `tasks` takes them
        try:
            named = expand([t])
        except KeyError:
            named = []
        if not named:  # a misspelt name; a real task this run does not select (e.g. `--config tasks=[...]` over a
            #            profile with oracles on its synthetic task) simply gets no oracle rows
            problems.append(f"oracles.tasks: {t!r} is not a task or group name."
                            f"{did_you_mean(t, list(configured) + [x.name for x in list_tasks()])}")
        chosen += [n for n in named if n in configured]
    for base in orc["methods"]:
        if base not in cfg["methods"]:
            problems.append(f"oracles.methods: {base!r} is not a configured method."
                            f"{did_you_mean(base, list(cfg['methods']))}")
    if problems:
        raise ConfigError(_problems(problems))
    for task in dict.fromkeys(chosen):
        full = task_config(cfg, task)
        for base in [m for m in orc["methods"] if m in cfg["run_methods"]]:  # as in ablations: a method the
            base_spec = resolve_spec(base, cfg["methods"][base])                # profile does not run has none
            n = _trajectory_size(cfg, task, base_spec.get("trajectory"))
            as_td = _effective(base_spec | {"schedule": "best", "schedule_options": {}}, full)
            same = [m for m in cfg["run_methods"]
                    if _effective(resolve_spec(m, cfg["methods"].get(m, {})), full) == as_td]
            fixed = []
            for k in range(1, n + 1):
                name = same[0] if k == n and same else f"{base}.ckpt{k}"
                if name not in cfg["run_methods"]:
                    plan["variants"][name] = base_spec | {"schedule": "fixed", "schedule_options": {"checkpoint": k}}
                fixed.append(name)
            plan["variants"][f"{base}.reversed"] = base_spec | {"schedule": "reversed_order", "schedule_options": {}}
            plan["tasks"].setdefault(task, {})[base] = {"fixed": fixed, "reversed": f"{base}.reversed"}
    return plan


def _trajectory_size(cfg: dict, task: str, own: int | None) -> int:
    """N, the number of checkpoints a method follows on `task` (its own trajectory, else training.distill's;
    unset: every checkpoint the teacher SFT saves)."""
    n = own or task_config(cfg, task)["training"]["distill"].get("trajectory", DistillTraining.trajectory)
    saved = len(checkpoint_names(stage_config(cfg, task, "sft", "teacher").save_checkpoints))
    return min(n, saved) if n else saved


def oracle_rows(cfg: dict, task: str) -> list[str]:
    """The oracle rows of `task` that are not run methods, in plan order."""
    by_base = oracle_plan(cfg)["tasks"].get(task, {})
    rows = [r for rows in by_base.values() for r in [*rows["fixed"], rows["reversed"]]]
    return [r for r in dict.fromkeys(rows) if r not in cfg["run_methods"]]


def enabled_tasks(cfg: dict) -> list[str]:
    return list(cfg["tasks"])


def enabled_methods(cfg: dict) -> list[str]:
    """The methods the profile runs, in its order."""
    return list(cfg["run_methods"])


def distilled_methods(cfg: dict, task: str) -> list[str]:
    """The methods distilled on `task`: the profile's, then the ablation variants if the task is ablated."""
    plan = ablation_plan(cfg)
    variants = list(plan["variants"]) if task in plan["tasks"] else []
    return enabled_methods(cfg) + variants + [r for r in oracle_rows(cfg, task) if r not in variants]


def distill_trajectories(cfg: dict, task: str) -> list[int | None]:
    """The distinct trajectory sizes of the task's distillations (None: every saved checkpoint), in increasing
    order with None last: what the task's teacher-output cache must cover."""
    full = task_config(cfg, task)
    specs = full["methods"] | ablation_plan(cfg)["variants"] | oracle_plan(cfg)["variants"]
    phase = full["training"]["distill"].get("trajectory", DistillTraining.trajectory)
    sizes = {method_spec(m, specs[m]).trajectory or phase for m in distilled_methods(cfg, task)}
    return sorted(s for s in sizes if s is not None) + ([None] if None in sizes else [])


def teacher_cache_checkpoints(cfg: dict, task: str) -> list[str]:
    """The teacher checkpoints whose outputs the task's teacher-output cache holds, in training order."""
    saved = stage_config(cfg, task, "sft", "teacher").save_checkpoints
    return used_checkpoints(checkpoint_names(saved), distill_trajectories(cfg, task))


# What the workflow evaluates and what `scd aggregate` reads: the Snakefile's rules (all, aggregate) and `scd collect`
# (results run in parts, aggregated without the workflow) take these lists from here, so they cannot differ.
SFT_ROWS = ("teacher_zero_shot", "student_zero_shot", "teacher_sft", "student_sft")  # evaluated besides the methods


def teacher_seeds(cfg: dict) -> dict[int, int]:
    """seed -> the seed whose teacher its jobs read: with `shared_teacher` the first seed's (its fine-tuning,
    trajectory and outputs serve every seed, its evaluations are reused), else its own."""
    return {s: cfg["seeds"][0] if cfg.get("shared_teacher") else s for s in cfg["seeds"]}


def evaluated_models(cfg: dict, task: str) -> list[str]:
    """The rows evaluated on `task` (one test evaluation per seed each): the zero-shot and SFT models, then every
    distilled method (scd.config.distilled_methods)."""
    return list(SFT_ROWS) + distilled_methods(cfg, task)


def aggregate_inputs(cfg: dict) -> dict[str, list[Path]]:
    """Every file `scd aggregate` reads for this configuration, by its argument: evaluation summaries (`evals`) and
    their per-sample records (`samples`) of each (task, seed, row), each distillation's summary, the teacher-output
    manifest of each task and teacher seed (tasks with a distilled method), each task's prepared-data manifest.
    Paths in the layout of cfg["results_dir"] (scd/layout.py), in the workflow's order."""
    layout, tasks, seeds = Layout(cfg["results_dir"]), enabled_tasks(cfg), cfg["seeds"]
    distilled = {t: distilled_methods(cfg, t) for t in tasks}
    runs = [(t, s, m) for t in tasks for s in seeds for m in evaluated_models(cfg, t)]
    teachers = sorted(set(teacher_seeds(cfg).values()))
    return {
        "evals": [layout.eval_summary(*run) for run in runs],
        "samples": [layout.eval_samples(*run) for run in runs],
        "distill_summaries": [layout.distill_summary(t, s, m) for t in tasks for s in seeds for m in distilled[t]],
        "teacher_outputs_manifests": [layout.teacher_outputs_manifest(t, s) for t in tasks for s in teachers
                                      if distilled[t]],
        "prepared_manifests": [layout.prepared_manifest(t) for t in tasks],
    }


def expected_plan(cfg: dict) -> dict:
    """The runs the leaderboard must hold, {task: {"seeds": [...], "models": [...]}} (`scd aggregate --expect`)."""
    return {t: {"seeds": cfg["seeds"], "models": evaluated_models(cfg, t)} for t in enabled_tasks(cfg)}


def leaderboard_methods(cfg: dict) -> list[str]:
    """The leaderboard's method rows in order (`scd aggregate --methods`): the run methods, then the oracle rows."""
    methods = enabled_methods(cfg)
    return methods + [m for m in oracle_plan(cfg)["variants"] if m not in methods]


def aggregate_plans(cfg: dict) -> dict:
    """The ablations' tasks and axes and the oracle rows per task and base method (`scd aggregate --ablations`)."""
    ablations = ablation_plan(cfg)
    return {"tasks": ablations["tasks"], "axes": ablations["axes"], "oracles": oracle_plan(cfg)["tasks"]}
