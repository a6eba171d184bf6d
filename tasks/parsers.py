"""Answer parsers: turn generated text into the form the metric compares. They never execute model output.

A parser is `fn(text: str, task) -> value`; `task` may be None for those that do not read it. A parser never
raises on model output: text it cannot read becomes "" or [], which the metrics count as wrong.
"""
from __future__ import annotations

import ast
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


UPSTREAM_LETTERS = "ABCDEF"  # JMED-LLM's get_first_uppercase_alphabet (src/utils.py), whatever the question offers


@PARSERS.register("letter")
def letter(text: str, task=None) -> str:
    """JMED-LLM's get_first_uppercase_alphabet: the first character of the text that is one of the letters A-F,
    case-sensitive, else "" (upstream returns the string "None"; both are no label, so every metric counts them
    wrong). As upstream, the letters are A-F whatever the question offers: "E" on a four-option question is the
    answer "E" (wrong), not a character to skip; a task declaring single-letter labels beyond F adds them.

    Faithful to upstream, so "Answer: B" gives "A" (from "Answer"); the prompt asks for the letter alone."""
    letters = set(UPSTREAM_LETTERS) | {x for x in (getattr(task, "labels", None) or ()) if len(x) == 1}
    return next((c for c in text if c in letters), "")


def _choices(task) -> list[str]:
    # Choice tasks whose choices are the labels may not repeat them under evaluation.choices.
    return list((getattr(task, "evaluation", None) or {}).get("choices") or getattr(task, "labels", None) or [])


@PARSERS.register("label")
def label(text: str, task) -> str:
    """The task's label (evaluation.choices, else task.labels) occurring earliest in the text, as a whole word
    sequence, case-insensitive; labels may hold "/" or spaces ("science/technology"). At one position the longest
    label wins ("science/technology" over "science"). Returns the canonical spelling, or "" if none occurs."""
    options = _choices(task)
    if not options:
        return ""
    # Longest first: the regex takes the first alternative that fits at the earliest position.
    longest_first = sorted(options, key=len, reverse=True)
    # (?<!\w)/(?!\w) rather than \b, which fails next to a label's leading or trailing punctuation.
    m = re.search(rf"(?<!\w)(?:{'|'.join(map(re.escape, longest_first))})(?!\w)", text, re.IGNORECASE)
    if not m:
        return ""
    # Matched text -> label with the regex's own case folding (str.lower differs from it for a few letters).
    return next(o for o in longest_first if re.fullmatch(re.escape(o), m.group(0), re.IGNORECASE))


MAX_LIST_CHARS = 10_000  # a generation is far shorter; the cap bounds literal_eval's parse time and memory

# A complete Python string literal, single or double quoted, with backslash escapes, on one line.
_STRING = r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\""
_LIST_START = re.compile(r"\[\s*(?=['\"\]])")
_LIST_ITEM = re.compile(rf"\s*({_STRING})\s*(,|\]|$)")


def _unquote(literal: str) -> str:
    try:
        value = ast.literal_eval(literal)  # a lone string literal; evaluates nothing
    except Exception:  # e.g. a bad \N{...} escape
        return literal[1:-1]
    return value if isinstance(value, str) else literal[1:-1]


def _string_list_prefix(text: str) -> list[str]:
    """The complete string items of the first list in the text, up to where the list stops being a list of
    strings: "['a', 'b', 'c" (cut off) -> ['a', 'b']. Only items inside brackets count, so the quoted arguments
    of code such as "__import__('os').system('x')" are never taken for entities."""
    start = _LIST_START.search(text)
    if not start:
        return []
    out, pos = [], start.end()
    while m := _LIST_ITEM.match(text, pos):
        out.append(_unquote(m.group(1)))
        if m.group(2) != ",":
            break
        pos = m.end()
    return out


@PARSERS.register("entity_list")
def entity_list(text: str, task=None) -> list[str]:
    """A Python list (or tuple) literal of strings -> its strings (non-strings dropped); any other literal -> [].
    Text that is not a literal (a generation cut off mid-list, or followed by more text) falls back to
    `_string_list_prefix`. Text beyond MAX_LIST_CHARS is ignored."""
    text = text[:MAX_LIST_CHARS]
    try:
        value = ast.literal_eval(text.strip())
    except Exception:  # SyntaxError, ValueError, and MemoryError/RecursionError on deep nesting
        return _string_list_prefix(text)
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str)]
    return []


@PARSERS.register("python_list")
def python_list(text: str, task=None) -> list[str]:
    """JMED-LLM's get_list_from_string, without running the text: the generation read whole as one Python list
    literal (leading spaces and tabs allowed, as upstream's eval allows them) -> its strings; anything else (a list
    cut off, text before or after it, any other value) -> [], as upstream's bare `except` gives. Unlike
    `entity_list` it recovers nothing from a partial list. Differences from upstream, both on output no
    instruction-following model gives: a list that only code would build ("list('ab')", which upstream's eval runs)
    is [], and items that are not strings are dropped (upstream keeps them as predictions that match no gold)."""
    if len(text) > MAX_LIST_CHARS:  # no generation's answer list: a cap on literal_eval's parse time and memory
        return []
    try:
        value = ast.literal_eval(text)
    except Exception:  # SyntaxError, ValueError, and MemoryError/RecursionError on deep nesting
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
