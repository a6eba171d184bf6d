"""What each stage reads, as frozen, typed objects: every default is declared here, once.

The experiment configuration (config/*.yaml, checked against config/schema.json by scd/config.py) is a matrix of
tasks, methods and seeds; a job sees only its stage's view of it, one of the `*Job` classes below. The Snakefile
passes that view to the job as JSON (`to_json`), so a job's Snakemake params are exactly what its stage reads and a
change elsewhere reruns nothing; the job reads it back with `job_from_json`, which refuses unknown keys and values
of the wrong type with a message that names the key.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from scd.registry import did_you_mean


class SettingsError(ValueError):
    """A job configuration that does not fit its stage's settings: the message names the key."""


# ---- parts ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Optimization:
    """One training phase: AdamW, linear warm-up then cosine decay, gradient clipping (scd/train.py)."""
    epochs: int
    lr: float
    batch_size: int
    micro_batch_size: int | None = None  # gradient accumulation: forward/backward this many rows at a time
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = None       # max gradient norm; None or 0: no clipping


@dataclass(frozen=True)
class DistillTraining(Optimization):
    """Distillation: `stages` stages of epochs / stages epochs each (stages must divide epochs: config.py refuses
    a budget that would not), a fresh optimizer per stage."""
    stages: int = 1
    trajectory: int | None = None        # teacher checkpoints the schedules choose among (evenly spaced, ending at
    #                                      T*); None: every saved one
    probe_size: int = 256                # rows SCD compares distributions on (from its probe_source split)
    check_trajectory: bool = False       # true: stop when the teacher checkpoints read are not distinct and in
    #                                      training order (T* at a checkpoint's step or before it); false: record it
    #                                      in the summary, warn, go on (the report lists such runs)
    transfer: bool = True                # add the task's transfer set, labelled by the stage's teacher checkpoint
    init: str = "student_sft"            # student_sft | base: the student distillation starts from
    chunk_tokens: int | None = 512       # response positions per chunk of the loss; None: all at once


@dataclass(frozen=True)
class Evaluation:
    batch_size: int = 64
    mode: str = "task"                   # task (the task's declared mode) | benchmark (the benchmark's own
    #                                      protocol, tasks' evaluation.benchmark; else the task's) | generate | choices


@dataclass(frozen=True)
class Tracking:
    experiment: str = "scd-bench"
    tracking_uri: str | None = None      # $MLFLOW_TRACKING_URI wins; None: SQLite in the results directory


@dataclass(frozen=True)
class Report:
    """The HTML report (report/render.py), config `report`; no job reads it."""
    ui_url: str = "http://127.0.0.1:5000"  # the MLflow UI its cells and plots link to (`mlflow ui`'s address)


@dataclass(frozen=True)
class Tokenizer:
    source: str = "train"                # train: trained on the task's training text | teacher: the teacher's own
    vocab_size: int = 2000               # BPE tasks; character-level tasks take their alphabet
    prompt_format: str = "auto"          # chat (the tokenizer's chat template) | plain | auto: chat where the
    #                                      tokenizer has a template (instruct models), else plain (scd/data.py)


@dataclass(frozen=True)
class MethodSpec:
    """A distillation method, resolved: its preset and the defaults filled in (scd/distill/methods.py)."""
    divergence: str
    schedule: str = "best"
    weighting: str = "none"
    responses: str = "gold"
    alpha: float = 0.5
    temperature: float = 1.0
    tau_squared: bool = False
    options: dict = field(default_factory=dict)
    schedule_options: dict = field(default_factory=dict)
    weighting_options: dict = field(default_factory=dict)
    responses_options: dict = field(default_factory=dict)
    stages: int | None = None            # this method's stages (None: training.distill.stages)
    trajectory: int | None = None        # this method's trajectory size (None: training.distill.trajectory)


# ---- one class per stage ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """What every job reads."""
    task: str
    profile: str = "default"
    results_dir: str = "results"
    threads: int = 1                     # torch threads
    device: str = "cpu"                  # cpu | cuda | auto
    precision: str = "fp32"              # fp32 | bf16 | auto autocast of model forwards (losses, softmax float32)
    log_every: int = 10                  # optimizer steps between logged training metrics
    evaluation: Evaluation = Evaluation()
    mlflow: Tracking = Tracking()


@dataclass(frozen=True)
class PrepareJob(Job):
    data_dir: str | None = None          # None: the per-user cache (tasks/datafiles.py)
    tokenizer: Tokenizer = Tokenizer()
    max_length: int | None = None        # replaces the task's declared max_length
    task_options: dict = field(default_factory=dict)
    task_fingerprint: str = ""           # the task declaration's and loader's hash: a change re-prepares
    teacher: dict | None = None          # the teacher's model spec, when the tokenizer is the teacher's
    allow_modified_data: bool = False    # use data files whose sha256 differs from the task's declaration
    #                                      (recorded in MLflow and the manifest's data_modified); else they stop the job
    code: str = ""                       # fingerprint of the code this job runs (scd/config.py code_files): an edit
    #                                      reruns exactly the jobs whose code changed


@dataclass(frozen=True)
class SFTJob(Job):
    role: str = "teacher"
    model: dict = field(default_factory=dict)  # model spec (scd/models.py), a derived student's base under `base`
    training: Optimization | None = None
    save_checkpoints: int = 0            # the teacher's trajectory: checkpoints saved, evenly spaced over its steps
    code: str = ""                       # fingerprint of the code this job runs (scd/config.py code_files): an edit
    #                                      reruns exactly the jobs whose code changed


@dataclass(frozen=True)
class TeacherOutputsJob(Job):
    transfer: bool = True
    trajectories: list | None = None     # the trajectory sizes of the distillations that read this cache: only the
    #                                      checkpoints they pick are computed (None, or None in it: every saved one)
    code: str = ""                       # fingerprint of the code this job runs (scd/config.py code_files): an edit
    #                                      reruns exactly the jobs whose code changed


@dataclass(frozen=True)
class DistillJob(Job):
    method: str = ""
    spec: MethodSpec | None = None
    training: DistillTraining | None = None
    student: dict | None = None          # the student's model spec, when distillation needs it (init: base, or
    #                                      gradient checkpointing, a switch a saved model does not carry)
    code: str = ""                       # fingerprint of the code this job runs (scd/config.py code_files): an edit
    #                                      reruns exactly the jobs whose code changed
    plugins: dict = field(default_factory=dict)  # {entry point: version} of the installed plugins the method's
    #                                      parts come from (recorded in MLflow as plugin.<name>.version)

    @property
    def stages(self) -> int:
        return self.spec.stages or self.training.stages

    @property
    def trajectory(self) -> int | None:
        return self.spec.trajectory or self.training.trajectory


@dataclass(frozen=True)
class EvaluateJob(Job):
    code: str = ""                       # fingerprint of the code this job runs (scd/config.py code_files): an edit
    #                                      reruns exactly the jobs whose code changed


@dataclass(frozen=True)
class ZeroShotJob(Job):
    role: str = "teacher"
    model: dict = field(default_factory=dict)
    code: str = ""                       # fingerprint of the code this job runs (scd/config.py code_files): an edit
    #                                      reruns exactly the jobs whose code changed


STAGES: dict[str, type[Job]] = {"prepare": PrepareJob, "sft": SFTJob, "teacher_outputs": TeacherOutputsJob,
                                "distill": DistillJob, "evaluate": EvaluateJob, "zero_shot": ZeroShotJob}


# ---- building and serialising ------------------------------------------------------------------------------------

def build(cls: type, data: Any, where: str = ""):
    """An instance of dataclass `cls` from a mapping, recursively; unknown keys and wrong types are refused."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise SettingsError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        hints = "".join(did_you_mean(k, fields) for k in unknown)
        raise SettingsError(f"{where or cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}.{hints} "
                            f"Known: {', '.join(fields)}.")
    hints = typing.get_type_hints(cls)
    values = {k: _value(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SettingsError(f"{where or cls.__name__}: missing key(s) {', '.join(missing)}")
    return cls(**values)


def _value(hint, value, where: str):
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _value(option, value, where)
            except SettingsError as e:
                errors.append(str(e))
        raise SettingsError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of "
                            f"{' | '.join(getattr(o, '__name__', str(o)) for o in options)} ({'; '.join(errors)})")
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise SettingsError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_value(a, v, where) for a, v in zip(args, value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint in (int, str, bool, dict, list):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise SettingsError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    raise SettingsError(f"{where}: unsupported type {hint}")


def to_dict(obj) -> dict:
    """A settings object as plain JSON-able data (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def to_json(obj) -> str:
    return json.dumps(to_dict(obj), sort_keys=True)


def job_from_json(stage: str, text: str) -> Job:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SettingsError(f"the {stage} job's configuration is not valid JSON: {e}") from None
    return build(STAGES[stage], data, stage)
