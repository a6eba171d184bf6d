"""Registries of the parts of a distillation method, and of method presets.

- DIVERGENCES: f(student_logits, teacher_logits, mask, temperature, **options) -> per-token loss [B, T], float32,
  exactly 0 at masked positions. Pure functions: testable on tensors without a model. A token's value depends on
  that token's logits only, so the loss calls them on the response positions alone ([1, N, V]; a function that
  needs the sequence sets `fn.positionwise = False`). A divergence with state or
  trained parts (TAID's interpolation, DSKD's projectors) is an `Objective` subclass instead, built once per run.
- RESPONSES: which sequences the loss is computed on: `gold` (teacher-forced on the gold responses), or a
  baseline's (teacher-generated for sequence-level KD, student-sampled for on-policy GKD).
- SCHEDULES: classes with `choose(ctx) -> checkpoint name`, called when a stage starts, given a
  `StageContext` (scd/distill/context.py): teacher checkpoints, the current student, a probe set.
- WEIGHTINGS: classes with `begin_stage(ctx, checkpoint)` and `weights(batch, alpha) -> tensor [B] in [0, 1]`, the
  per-sample weight of the divergence against CE (no gradient).
- METHODS: presets, a name -> a partial method spec (e.g. seqkd = teacher responses, no divergence, pure CE),
  which a config entry of that name (or with `preset: <name>`) starts from.
Schedules, weightings, responses and objectives are built with their options as keyword arguments
(`schedule_options`, `weighting_options`, `responses_options`, `options` in a method's config); divergence
functions receive `options` as keyword arguments. Every part registers with `reference=` for `scd methods`.
"""
from __future__ import annotations

import inspect
import types
import typing

import torch

from scd.registry import Registry

DIVERGENCES: Registry = Registry("divergence")
SCHEDULES: Registry = Registry("teacher schedule")
WEIGHTINGS: Registry = Registry("sample weighting")
RESPONSES: Registry = Registry("response source")
METHODS: Registry = Registry("method preset")

register_divergence = DIVERGENCES.register
register_schedule = SCHEDULES.register
register_weighting = WEIGHTINGS.register
register_responses = RESPONSES.register


# What a preset reproduces: the suite's common protocol (every baseline on the same footing: TD's CE mix alpha 0.5
# on gold rows, temperature 1, the suite's budget), or the reference code's own settings (its CE mix, usually none,
# its temperature and the other settings it fixes). A reference preset is named `<common preset>_ref`.
PROTOCOLS = ("common", "reference")
REFERENCE_SUFFIX = "_ref"


def register_method(name: str, reference: str = "", protocol: str = "common", display: str = "", **spec) -> dict:
    """A method preset: `register_method("seqkd", responses="teacher", divergence="none", alpha=0.0)`.

    `protocol`: "common" (the suite's shared protocol) or "reference" (as the reference code runs it; the name ends
    in `_ref` and the common preset it pairs with is the name without it). `display`: the row's name for people
    (e.g. "skew KL (DistiLLM's loss)"), kept with `reference` as the registry's metadata, not in the spec."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"method preset {name!r}: protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if (protocol == "reference") != name.endswith(REFERENCE_SUFFIX):
        raise ValueError(f"method preset {name!r}: a reference preset, and only one, is named <common preset>"
                         f"{REFERENCE_SUFFIX} (protocol {protocol!r})")
    return METHODS.register(name, reference=reference, protocol=protocol, display=display)(spec)


def preset_protocol(name: str) -> str:
    """'reference' or 'common' for a registered preset."""
    return METHODS.meta(name).get("protocol", "common")


class Objective(torch.nn.Module):
    """A divergence with state or trained parts. Called like a divergence function; its `state_dict` (buffers
    and parameters) is saved with the run and logged, its parameters join the student's optimizer.

    `uses_hidden`: forward also receives, as keyword arguments, `student_hidden` [B, T, Hs] and `teacher_hidden`
    [B, T, Ht] (last layer, after the final norm; the teacher's are zero off the response positions),
    `student_head` / `teacher_head` (output embedding matrices [V, H]; the student's carries gradient),
    `student_embed` / `teacher_embed` (input embedding matrices [V, H]), `input_ids` and `labels` [B, T].
    Before training, `bind(student_hidden_size, teacher_hidden_size)` lets it build its trained parts."""

    uses_hidden = False

    def bind(self, student_hidden_size: int, teacher_hidden_size: int) -> None:
        """Build parts whose shapes depend on the models (called once, before the optimizer is made)."""

    def after_step(self, loss: float, step: int, total_steps: int) -> None:
        """Called after every optimizer step with the step's loss (steps count across stages)."""

    def log_values(self) -> dict[str, float]:
        """Scalars to log with the training metrics (e.g. TAID's t)."""
        return {}

# Arguments every divergence takes; anything else in its signature is a hyperparameter with a default.
DIVERGENCE_ARGS = ("student_logits", "teacher_logits", "mask", "temperature")


def hyperparameters(obj) -> dict:
    """The declared hyperparameters of a registered part and their defaults: the keyword arguments of a
    divergence function after DIVERGENCE_ARGS, or of a class's constructor."""
    return {k: p.default for k, p in inspect.signature(obj).parameters.items()
            if k not in DIVERGENCE_ARGS and p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def hyperparameter_types(obj) -> dict:
    """The declared type of each hyperparameter: its annotation; unannotated, the type of its default (an int
    default takes any number, a None default any value)."""
    target = obj.__init__ if isinstance(obj, type) else obj
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001  (an annotation that does not resolve: fall back to the defaults' types)
        hints = {}

    def from_default(v):
        return typing.Any if v is None else float if type(v) is int else type(v)

    return {k: hints.get(k, from_default(v)) for k, v in hyperparameters(obj).items()}


def _is_union(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _fits(hint, value) -> bool:
    if hint is typing.Any:
        return True
    if _is_union(hint):
        return any(_fits(a, value) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:  # an int is a number; a bool is not
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    hint = typing.get_origin(hint) or hint
    if hint in (list, tuple):  # a config file's sequences are lists
        return isinstance(value, (list, tuple))
    return not isinstance(hint, type) or isinstance(value, hint)


def _type_name(hint) -> str:
    if _is_union(hint):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string", dict: "a mapping",
             list: "a list", tuple: "a list", type(None): "null"}
    return names.get(typing.get_origin(hint) or hint, getattr(hint, "__name__", str(hint)))


def option_type_problems(obj, options: dict, where: str) -> list[str]:
    """One message per option whose value does not fit the part's declared hyperparameter type, naming the key
    (`where`.option, e.g. methods.scd.schedule_options.lam) and the expected type. Unknown options are left to
    the part's constructor (which names the options it has)."""
    hints, defaults = hyperparameter_types(obj), hyperparameters(obj)
    return [f"{where}.{k}: expected {_type_name(hints[k])}, got {v!r} (default {defaults[k]!r})"
            for k, v in (options or {}).items() if k in hints and not _fits(hints[k], v)]
