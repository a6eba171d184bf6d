"""A distillation method = teacher schedule x divergence x sample weighting x response source, plus the loss that
combines them. `resolve_spec` turns a config entry (or a registered preset) into a full spec with defaults."""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field

import torch

from scd.distill.parts import (
    DIVERGENCES,
    METHODS,
    RESPONSES,
    SCHEDULES,
    WEIGHTINGS,
    Objective,
    hyperparameters,
    option_type_problems,
)
from scd.distill.plugins import explain, load_plugins
from scd.registry import UnknownNameError
from scd.settings import MethodSpec, SettingsError, build, to_dict
from scd.tokens import CHUNK_TOKENS, at_positions, nll, response_mask, token_ce

# leaderboard rows that are not distillation methods
RESERVED = {"teacher_sft", "student_sft", "teacher_zero_shot", "student_zero_shot"}

# What a config entry inherits when it does not say (scd.settings.MethodSpec's defaults): TD's schedule, no
# weighting, gold responses, vanilla KD's mix.
DEFAULTS = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(MethodSpec) if f.name != "divergence"}


@dataclass
class Method:
    name: str
    schedule: object
    divergence: callable
    weighting: object
    responses: object = None
    alpha: float = 0.5
    temperature: float = 1.0
    tau_squared: bool = False
    options: dict = field(default_factory=dict)
    chunk_tokens: int | None = CHUNK_TOKENS  # positionwise divergences and CE run this many tokens at a time

    @property
    def objective(self) -> Objective | None:
        return self.divergence if isinstance(self.divergence, Objective) else None

    @property
    def needs_teacher(self) -> bool:
        return getattr(self.divergence, "needs_teacher", True)

    @property
    def positionwise(self) -> bool:
        """Each token's value depends on that token's logits alone (divergence functions, unless they say
        otherwise): the loss may pick the response positions out first."""
        return getattr(self.divergence, "positionwise", not isinstance(self.divergence, Objective))

    @property
    def uses_hidden(self) -> bool:
        return getattr(self.divergence, "uses_hidden", False)

    def loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor,
             weights: torch.Tensor, labelled: torch.Tensor | None = None, n_tokens: int | None = None,
             **inputs) -> tuple[torch.Tensor, dict[str, float]]:
        """sum_i,t mask * (w_i * D_it + (1 - w_i) * CE_it) / n_tokens, in float32.

        n_tokens: the valid-token count of the whole optimizer step (all micro-batches under gradient
        accumulation); by default this batch's. Rows with labelled = False (transfer set, on-policy samples: the
        target is not a gold label) take the divergence alone, w_i = 1: there is no gold CE to mix in.
        `inputs`: hidden states and heads for objectives that use them (see parts.Objective)."""
        mask = response_mask(labels)
        if teacher_logits is None:
            teacher_logits = torch.zeros_like(student_logits)
        elif teacher_logits.shape[-1] != student_logits.shape[-1] and getattr(self.divergence, "same_vocab", True):
            raise ValueError(f"student logits over {student_logits.shape[-1]} tokens, teacher logits over "
                             f"{teacher_logits.shape[-1]}: divergence {self.name!r} compares distributions over one "
                             f"vocabulary. Slice both to the shared real vocabulary (len(tokenizer); embedding rows "
                             f"past it are padding) or use a cross-tokenizer method (uld, dskd_cma)")
        teacher_logits = teacher_logits.detach()  # the teacher is a target: no gradient, whatever the caller did
        if self.uses_hidden:
            inputs["labels"] = labels
        if self.positionwise:  # per token: at the response positions only, [1, n, V] per chunk, with the CE
            def per_token(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                ones = torch.ones(s.shape[:1], dtype=torch.bool, device=s.device)
                d = self.divergence(s.float()[None], t.float()[None], ones[None], self.temperature, **self.options)
                return torch.stack([d[0], nll(s, y)], -1)

            both = at_positions(per_token, mask, student_logits, teacher_logits, labels,
                                chunk_tokens=self.chunk_tokens)
            div, ce = both[..., 0], both[..., 1]
        else:
            div = self.divergence(student_logits.float(), teacher_logits.float(), mask, self.temperature,
                                  **self.options, **inputs)
            ce = token_ce(student_logits, labels, self.chunk_tokens)
        if self.tau_squared:
            div = div * self.temperature ** 2
        w = weights.detach().float().to(div.device)
        if labelled is not None:
            w = torch.where(labelled.to(div.device), w, torch.ones_like(w))
        w = w.unsqueeze(-1)
        n = mask.sum().clamp(min=1) if n_tokens is None else max(int(n_tokens), 1)
        loss = ((w * div + (1 - w) * ce) * mask).sum() / n
        # the mean weight of labelled rows: transfer rows are 1 by construction, not by the weighting's choice
        given = weights.detach().float()[labelled.cpu()] if labelled is not None else weights.detach().float()
        stats = {"divergence": float((div.detach() * mask).sum() / n), "ce": float((ce.detach() * mask).sum() / n),
                 "weight_mean": float(given.mean()) if given.numel() else 0.0}
        return loss, stats


def uneven_stages(epochs: int, stages: int, stages_key: str = "training.distill.stages") -> str | None:
    """Why `epochs` distillation epochs cannot run as `stages` stages of the same whole number of epochs (with
    the fix), or None when they can. `stages_key`: where the number of stages comes from, for the fix."""
    if stages >= 1 and epochs >= 1 and epochs % stages == 0:
        return None
    divisors = ", ".join(str(d) for d in range(1, epochs + 1) if epochs % d == 0)
    other = f"only divisors of {epochs} in {stages_key}" if stages_key.endswith(".values") else \
        f"{stages_key} to a divisor of {epochs}"
    return (f"training.distill.epochs {epochs} does not split into {stages} stages of whole epochs "
            f"({stages_key}: {stages}); set training.distill.epochs to a multiple of {stages} "
            f"(e.g. {max(1, -(-epochs // stages)) * stages}) or {other} ({divisors})")


def _build(cls, options: dict, what: str):
    try:
        return cls(**options)
    except TypeError as e:  # an unknown keyword: say which part and which options exist
        known = [p for p in inspect.signature(cls).parameters if p != "options"]
        raise ValueError(f"{what} {cls.__name__}: {e}; its options: {', '.join(known) or '(none)'}") from None


def resolve_spec(name: str, spec: dict) -> dict:
    """A config entry with its preset (`preset:`, or a registered preset of the same name) and the defaults
    filled in (every key of scd.settings.MethodSpec). The entry's own keys win."""
    load_plugins()
    preset_name = spec.get("preset", name if name in METHODS else None)
    preset = dict(METHODS.get(preset_name)) if preset_name is not None else {}
    full = DEFAULTS | preset | {k: v for k, v in spec.items() if k != "preset"}
    if "divergence" not in full:
        raise ValueError(f"no divergence given and no method preset named {name!r}; set `divergence:` "
                         f"(one of {', '.join(DIVERGENCES)}) or `preset:` (one of {', '.join(METHODS) or 'none'})")
    return full


def method_spec(name: str, spec: dict) -> MethodSpec:
    """The resolved spec as its typed settings object."""
    if name in RESERVED:
        raise ValueError(f"{name!r} names a leaderboard row of its own; pick another method name")
    try:
        return build(MethodSpec, resolve_spec(name, spec), f"methods.{name}")
    except SettingsError as e:
        raise ValueError(str(e)) from None


def explicit_options(spec: dict) -> dict:
    """A resolved spec with its parts' declared option defaults made explicit (e.g. SCD's lam), so two specs
    compare equal when they run the same."""
    out = dict(spec)
    for key, registry in (("schedule", SCHEDULES), ("weighting", WEIGHTINGS), ("responses", RESPONSES)):
        out[f"{key}_options"] = hyperparameters(registry.get(spec[key])) | (spec.get(f"{key}_options") or {})
    return out


# a spec's option key -> the spec key naming the part it configures, and that part's registry
PART_OPTIONS = {"options": ("divergence", DIVERGENCES), "schedule_options": ("schedule", SCHEDULES),
                "weighting_options": ("weighting", WEIGHTINGS), "responses_options": ("responses", RESPONSES)}


def check_option_types(name: str, spec: dict) -> None:
    """Refuse (one line, naming e.g. methods.scd.schedule_options.lam and the type expected) option values that do
    not fit the declared hyperparameter types of the parts a resolved spec names."""
    problems = [p for key, (part, registry) in PART_OPTIONS.items()
                for p in option_type_problems(registry.get(spec[part]), spec.get(key) or {}, f"methods.{name}.{key}")]
    if problems:
        raise ValueError("; ".join(problems))


def method_from_config(name: str, spec: dict | MethodSpec) -> Method:
    """The method's parts built from its config entry, or from its resolved spec (a job's settings). An unknown
    part's name is reported with the plugins that failed to load (it may be one of theirs)."""
    load_plugins()  # a job that reads its resolved spec has resolved nothing in this process yet
    try:
        return _method(name, spec)
    except UnknownNameError as e:
        raise UnknownNameError(explain(str(e))) from None


def _method(name: str, spec: dict | MethodSpec) -> Method:
    spec = to_dict(spec) if isinstance(spec, MethodSpec) else to_dict(method_spec(name, spec))
    div = DIVERGENCES.get(spec["divergence"])
    check_option_types(name, spec)
    options = dict(spec.get("options", {}))
    if isinstance(div, type) and issubclass(div, Objective):
        div, options = _build(div, options, "divergence"), {}
    else:
        unknown = sorted(set(options) - set(hyperparameters(div)))
        if unknown:
            known = ", ".join(f"{k}={v!r}" for k, v in hyperparameters(div).items()) or "(none)"
            raise ValueError(f"divergence {spec['divergence']!r} has no option {', '.join(map(repr, unknown))}; "
                             f"its options: {known}")
    return Method(
        name=name,
        schedule=_build(SCHEDULES.get(spec["schedule"]), spec.get("schedule_options", {}), "schedule"),
        divergence=div,
        weighting=_build(WEIGHTINGS.get(spec["weighting"]), spec.get("weighting_options", {}), "weighting"),
        responses=_build(RESPONSES.get(spec["responses"]), spec.get("responses_options", {}), "responses"),
        alpha=spec["alpha"],
        temperature=spec["temperature"],
        tau_squared=spec["tau_squared"],
        options=options,
    )
