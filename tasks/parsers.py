"""Answer parsers: turn generated text into the form the metric compares. They never execute model output."""
from __future__ import annotations

import re

from scd.registry import Registry

PARSERS: Registry = Registry("parser")
get = PARSERS.get


@PARSERS.register("strip")
def strip(text: str, task=None) -> str:
    return text.strip()


@PARSERS.register("choice")
def choice(text: str, task) -> str:
    """The first of the task's choices that occurs as a word in the text, else '' (counted wrong)."""
    options = task.evaluation["choices"]
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, options)) + r")\b", re.IGNORECASE)
    m = pattern.search(text)
    return m.group(1).lower() if m else ""
