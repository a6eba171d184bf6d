"""The property check every registered divergence must pass, a plugin's included: `check_divergence(name)`, and
`python -m scd.distill.checks NAME [NAME...]` (the `scd methods check` command); `require_sound(name, options)`
refuses a failing divergence before a distillation job trains with it.

On small random float32 logits [B, T, V], with a mask that leaves some positions out, at temperature 1 and the
divergence's default hyperparameters or given options (an `Objective` class is built with them), it checks that:
- the value is a float32 [B, T] tensor, finite, and exactly 0 at the masked positions;
- it is ~0 (1e-5) where the student's logits equal the teacher's (`zero_at_equality`);
- it is non-negative (`nonnegative`), and positive at every valid position where the two distributions differ
  (when it is also zero at equality and trains the student);
- the gradient of the masked token mean is finite, reaches the student logits and never the teacher logits;
- all-masked and empty batches give finite zeros, a zero loss and finite gradients.

A divergence that is not a true divergence says so on itself (a function attribute, or a class attribute of an
`Objective`), and the check then leaves that property out:
    fn.zero_at_equality = False   # not ~0 at equal logits (e.g. a loss with a constant offset)
    fn.nonnegative = False        # may be negative (not a divergence in the strict sense)
    fn.trains_student = False     # its value does not depend on the student logits (no gradient expected)
Divergences the generic check cannot call (`uses_hidden = True`: they need the models' hidden states and heads, or
constructor / hyperparameters without defaults) raise NotCheckable with the reason.
"""
from __future__ import annotations

import argparse
import inspect
import sys

import torch

from scd.distill.parts import DIVERGENCE_ARGS, DIVERGENCES
from scd.distill.plugins import load_plugins
from scd.registry import UnknownNameError

B, T, V = 3, 5, 13   # the check batch: small enough to run in milliseconds, with a masked position in every row
SCALE = 3.0          # logit scale: distributions far from uniform, far from each other
ZERO_TOL = 1e-5      # |D(z, z)| allowed at equal logits (float32 rounding)
NEG_TOL = 1e-6       # how far below 0 a non-negative divergence may round


class NotCheckable(Exception):
    """The generic check cannot call this divergence; `reason` says why."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: not checkable by the generic check: {reason}")
        self.name, self.reason = name, reason


def divergences():
    """The divergence registry, complete: the core divergences, every baseline module and every entry-point
    plugin."""
    load_plugins()
    return DIVERGENCES


def _required(params) -> list[str]:
    """Names of parameters without a default (not *args / **kwargs)."""
    return [k for k, p in params.items() if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def unchecked_reason(obj) -> str | None:
    """Why the generic check cannot call this registered divergence, or None if it can."""
    if getattr(obj, "uses_hidden", False):
        return ("it needs the models' hidden states, output heads and labels (uses_hidden), which a check on logits "
                "alone does not have")
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None  # a builtin or C callable: try it
    if isinstance(obj, type):
        missing = _required(sig.parameters)
        if missing:
            return f"its constructor needs {', '.join(missing)} (no defaults)"
        return None
    missing = _required(dict(list(sig.parameters.items())[len(DIVERGENCE_ARGS):]))
    if missing:
        return f"its hyperparameters {', '.join(missing)} have no defaults"
    return None


def not_checkable(name: str, registry=None) -> str | None:
    """The reason the registered divergence `name` cannot be checked generically, or None."""
    reg = divergences() if registry is None else registry
    return unchecked_reason(reg.get(name))


def _flag(obj, attr: str) -> bool:
    return bool(getattr(obj, attr, True))


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    s = SCALE * torch.randn(B, T, V, generator=g)
    t = SCALE * torch.randn(B, T, V, generator=g)
    mask = torch.rand(B, T, generator=g) > 0.3
    mask[:, 0] = True   # every row has a valid position ...
    mask[:, -1] = False  # ... and a masked one (padding)
    # padding positions hold large logits: they must not leak into the value or the gradient
    s = torch.where(mask[..., None], s, 10 * s)
    return s, t, mask


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def check_divergence(name: str, seed: int = 0, *, options: dict | None = None, registry=None) -> list[str]:
    """The problems of the registered divergence `name` on the check batch; an empty list: it passes.

    `options`: hyperparameters as a method's config gives them (keyword arguments of a divergence function, of an
    Objective's constructor); its defaults if None. `registry`: the divergence registry (default: the project's).
    Raises the registry's UnknownNameError for an unknown name and NotCheckable (with the reason) for a divergence
    the generic check cannot call."""
    reg = divergences() if registry is None else registry
    obj = reg.get(name)
    reason = unchecked_reason(obj)
    if reason:
        raise NotCheckable(name, reason)
    zero_at_equality, nonnegative = _flag(obj, "zero_at_equality"), _flag(obj, "nonnegative")
    trains_student = _flag(obj, "trains_student")
    problems: list[str] = []

    def problem(text: str) -> None:
        problems.append(f"{name}: {text}")

    options = dict(options or {})
    if isinstance(obj, type):  # an Objective: built once with its options, then called like a function
        try:
            built = obj(**options)
            if hasattr(built, "bind"):
                built.bind(16, 16)
        except Exception as e:  # noqa: BLE001  (whatever it is, it is the divergence's problem)
            problem(f"building it with {options or 'its defaults'} raised {type(e).__name__}: {e}")
            return problems
        fn, options = built, {}
    else:
        fn = obj

    def call(what: str, s, t, mask):
        try:
            out = fn(s, t, mask, 1.0, **options)
        except Exception as e:  # noqa: BLE001
            problem(f"raises {type(e).__name__} on {what}: {e}")
            return None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(mask.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            problem(f"returns {got} on {what}, expected a tensor of shape {tuple(mask.shape)}")
            return None
        if out.dtype != torch.float32:
            problem(f"returns {out.dtype} on {what}, expected torch.float32")
        return out

    # ---- the check batch: values, masked positions, sign, gradient --------------------------------------------------
    s0, t0, mask = _batch(seed)
    s, t = s0.clone().requires_grad_(True), t0.clone().requires_grad_(True)
    out = call("the check batch", s, t, mask)
    if out is not None:
        v = out.detach()
        finite = torch.isfinite(v)
        if not finite.all():
            problem(f"value is not finite (NaN or inf) at {int((~finite).sum())} of {v.numel()} positions")
        masked = v[~mask]
        if (masked != 0).any():
            problem(f"value at masked positions is {_fmt(float(masked.abs().max()))}, expected exactly 0")
        valid = v[mask]
        if nonnegative and finite.all() and float(valid.min()) < -NEG_TOL:
            problem(f"value is negative (min {_fmt(float(valid.min()))}) on the check batch, expected >= 0 "
                    f"(a divergence that may be negative declares `nonnegative = False`)")
        elif nonnegative and zero_at_equality and trains_student and finite.all():
            flat = int((valid <= NEG_TOL).sum())
            if flat:
                problem(f"value is 0 at {flat} of {valid.numel()} valid positions where student and teacher "
                        f"differ, expected > 0")
        loss = (out * mask).sum() / mask.sum()
        if loss.requires_grad:
            try:
                loss.backward()
            except Exception as e:  # noqa: BLE001
                problem(f"backward pass raises {type(e).__name__}: {e}")
        if trains_student:
            if s.grad is None:
                problem("no gradient reaches the student logits")
            elif not torch.isfinite(s.grad).all():
                problem(f"gradient to the student logits is not finite at {int((~torch.isfinite(s.grad)).sum())} "
                        f"entries")
            elif float(s.grad.abs().sum()) == 0.0:
                problem("gradient to the student logits is 0 everywhere")
        elif s.grad is not None and (s.grad != 0).any():
            problem("declares `trains_student = False` but gradient reaches the student logits")
        if t.grad is not None and (t.grad != 0).any():
            problem(f"gradient reaches the teacher logits (max |grad| {_fmt(float(t.grad.abs().max()))}), "
                    f"expected none: detach the teacher")

    # ---- equal distributions -----------------------------------------------------------------------------------------
    with torch.no_grad():
        same = call("equal student and teacher logits", s0.clone(), s0.clone(), mask)
    if same is not None:
        worst = float(same.abs().max()) if same.numel() else 0.0
        if not torch.isfinite(same).all():
            problem("value at equal distributions is not finite")
        elif zero_at_equality and worst > ZERO_TOL:
            problem(f"value at equal distributions is {_fmt(worst)}, expected 0 (a divergence that is not 0 there "
                    f"declares `zero_at_equality = False`)")
        elif nonnegative and same.numel() and float(same.min()) < -NEG_TOL:
            problem(f"value at equal distributions is negative ({_fmt(float(same.min()))}), expected >= 0")

    # ---- all-masked and empty batches --------------------------------------------------------------------------------
    for what, shape in (("an all-masked batch", (2, 4, V)), ("an empty batch", (0, 3, V))):
        g = torch.Generator().manual_seed(seed + 1)
        s = (SCALE * torch.randn(*shape, generator=g)).requires_grad_(True)
        t = SCALE * torch.randn(*shape, generator=g)
        none = torch.zeros(shape[:2], dtype=torch.bool)
        out = call(what, s, t, none)
        if out is None:
            continue
        if not torch.isfinite(out.detach()).all() or (out.detach() != 0).any():
            problem(f"value on {what} is not all 0")
        loss = (out * none).sum() / none.sum().clamp(min=1)
        if not torch.isfinite(loss.detach()) or float(loss.detach()) != 0.0:
            problem(f"loss on {what} is {_fmt(float(loss.detach()))}, expected 0")
        if loss.requires_grad:
            try:
                loss.backward()
            except Exception as e:  # noqa: BLE001
                problem(f"backward pass on {what} raises {type(e).__name__}: {e}")
                continue
            if s.grad is not None and not torch.isfinite(s.grad).all():
                problem(f"gradient on {what} is not finite")
        elif trains_student:
            problem(f"value on {what} carries no gradient to the student logits (keep the graph: a loss made of it "
                    f"alone could not be backpropagated)")
    return problems


class UnsoundDivergence(ValueError):
    """A divergence that fails the property check with a method's options: refused before training."""


def require_sound(name: str, options: dict | None = None, *, registry=None) -> None:
    """Refuse, in one line naming the divergence and every property it fails, a divergence that fails the check
    on the check batch with these options (a distillation job calls this before it trains: a NaN or a negative
    value would otherwise train into a meaningless score). A divergence the generic check cannot call passes."""
    try:
        problems = check_divergence(name, options=options, registry=registry)
    except NotCheckable:
        return
    if problems:
        given = f" with options {options}" if options else ""
        raise UnsoundDivergence(
            f"divergence {name!r}{given} fails the property check on a random check batch: "
            + "; ".join(p.removeprefix(f"{name}: ") for p in problems)
            + f"; fix it (`scd methods check {name}` repeats the check) before distilling with it")


def main(argv: list[str] | None = None) -> int:
    """`python -m scd.distill.checks [NAME ...]`: one line per divergence, `ok NAME`, `FAIL NAME: problems` or
    `skip NAME: not checkable ...`; every registered divergence when no name is given. Exit code 1 if any failed,
    2 for an unknown name (nothing is checked then)."""
    p = argparse.ArgumentParser(prog="scd methods check", description="Check the properties every divergence must "
                                "have (scd/distill/checks.py).")
    p.add_argument("names", nargs="*", metavar="NAME", help="registered divergences (default: all of them)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random check batch")
    args = p.parse_args(argv)
    reg = divergences()
    names = args.names or list(reg)
    for name in names:
        try:
            reg.get(name)
        except UnknownNameError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    failed = False
    for name in names:
        try:
            problems = check_divergence(name, args.seed, registry=reg)
        except NotCheckable as e:
            print(f"skip {e}")
            continue
        if problems:
            failed = True
            print(f"FAIL {name}: " + "; ".join(p.removeprefix(f"{name}: ") for p in problems))
        else:
            print(f"ok {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
