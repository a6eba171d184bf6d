"""Reading raw task files. Every error names the file, the row or line, and the problem, and says how to fix it."""
from __future__ import annotations

import csv
import io
from pathlib import Path


class TaskDataError(ValueError):
    """Task data is missing or malformed; the message says where and how to fix it."""


def _fix(task: str | None) -> str:
    return (f"re-fetch it with `scd data fetch {task}` or check the data directory" if task
            else "re-fetch the file or check the data directory")


def read_text(path: Path, task: str | None = None) -> str:
    """The file as strict UTF-8 (a BOM is dropped)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TaskDataError(f"{path}: file not found; {_fix(task)}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise TaskDataError(f"{path}: line {line}, column {column}: byte 0x{raw[e.start]:02x} is not UTF-8; "
                            f"re-encode the file as UTF-8 or {_fix(task)}") from None


def read_table(path: Path, required: list[str], delimiter: str = ",", task: str | None = None) -> list[dict]:
    """CSV (quoted cells may span lines) or TSV (no quoting: texts hold quotes) rows as dicts with `_line`, the
    file line where the row starts."""
    path = Path(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(read_text(path, task), newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except StopIteration:
        raise TaskDataError(f"{path}: the file is empty (no header); {_fix(task)}") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise TaskDataError(f"{path}: missing column(s) {missing}; the header has {header}; {_fix(task)}")
    rows, start = [], reader.line_num + 1
    for n, fields in enumerate(reader, 1):
        if not fields:  # a blank line
            start = reader.line_num + 1
            continue
        if len(fields) != len(header):
            raise TaskDataError(f"{path}: data row {n} (line {start}) has {len(fields)} fields, the header "
                                f"{len(header)}; {_fix(task)}")
        rows.append(dict(zip(header, fields)) | {"_line": start})
        start = reader.line_num + 1
    if not rows:
        raise TaskDataError(f"{path}: the table is empty (a header, no rows); {_fix(task)}")
    return rows


def read_lines(path: Path, task: str | None = None) -> list[str]:
    lines = read_text(path, task).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_conll(path: Path, labels: list[str] | None = None, task: str | None = None) -> list[dict]:
    """`token<TAB>tag` lines, a blank line between sentences -> [{tokens, tags, _line}]."""
    sentences, cur, first = [], {"tokens": [], "tags": []}, None
    for n, line in enumerate(read_lines(path, task), 1):
        if not line.strip():
            if cur["tokens"]:
                sentences.append(cur | {"_line": first})
            cur, first = {"tokens": [], "tags": []}, None
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise TaskDataError(f"{path}: line {n}: expected `token<TAB>tag`, got {len(fields)} field(s) "
                                f"{line[:60]!r}; {_fix(task)}")
        if labels is not None and fields[1] not in labels:
            raise TaskDataError(f"{path}: line {n}: tag {fields[1]!r} is not one of the declared labels {labels}")
        first = first or n
        cur["tokens"].append(fields[0])
        cur["tags"].append(fields[1])
    if cur["tokens"]:
        sentences.append(cur | {"_line": first})
    if not sentences:
        raise TaskDataError(f"{path}: no sentences (the file is empty); {_fix(task)}")
    return sentences


def check_label(value: str, labels: list[str], where: str) -> str:
    if value not in labels:
        raise TaskDataError(f"{where}: label {value!r} is not one of the declared labels {labels}; fix the row or "
                            f"the task declaration's `labels`")
    return value
