"""Row names for people, from the registries rather than a list kept here.

- a method preset registered with `display` (baselines/: `register_method(..., display="GKD (on-policy JSD)")`) is
  shown under it, as `scd methods list` shows it;
- a name made of the abbreviations the schedule and weighting registries give as their references ("TD: ...",
  "CD: ...", "SCD, ...", "AW, ...") is written in capitals, as the docs write the factorial: td+aw -> TD+AW;
- any other method keeps its configured name (`sym_kl`, `seqkd`: the docs' baseline table names them so);
- variants keep their suffix: scd+aw.n2 -> SCD+AW.n2, cd.ckpt1 -> CD.ckpt1.
The leaderboard's fixed rows (scd/stages/aggregate.py ROW_ORDER) are the SFT and zero-shot models.
"""
from __future__ import annotations

import functools
import re

from scd.distill import parts, plugins

FIXED_ROWS = {"teacher_sft": "teacher-SFT", "student_sft": "student-SFT", "teacher_zero_shot": "teacher (zero-shot)",
              "student_zero_shot": "student (zero-shot)"}
ABBREVIATION = re.compile(r"([A-Z][A-Z0-9]*)[:,]")  # a reference that opens with its abbreviation: "TD: ..."


@functools.cache
def abbreviations() -> dict[str, str]:
    """lower -> capitals for the abbreviations the schedule and weighting registries open their references with."""
    plugins.load_plugins(quiet=True)
    out = {}
    for registry in (parts.SCHEDULES, parts.WEIGHTINGS):
        for name, _ in registry.items():
            found = ABBREVIATION.match(registry.meta(name).get("reference", ""))
            if found:
                out[found.group(1).lower()] = found.group(1)
    return out


@functools.cache
def display(row: str) -> str:
    """The name a leaderboard row is shown under."""
    if row in FIXED_ROWS:
        return FIXED_ROWS[row]
    plugins.load_plugins(quiet=True)
    base, dot, variant = row.partition(".")
    shown = parts.METHODS.meta(base).get("display") if base in parts.METHODS else None
    if not shown:
        words = base.split("+")
        shown = "+".join(abbreviations()[w] for w in words) if all(w in abbreviations() for w in words) else base
    return shown + dot + variant
