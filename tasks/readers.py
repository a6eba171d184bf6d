"""Reading raw task files. Every error names the file, the row or line, and the problem, and says how to fix it.

`read_text` decodes strict UTF-8 (a BOM is dropped); `read_table` reads a CSV (quoted cells may span lines) or a TSV
(no quoting: texts hold quote characters) through it, so a bad byte is reported the same way for every format;
`read_lines` and `read_conll` read line-based files; `read_json` a JSON document. Rows and sentences carry `_line`,
the file line (1-based) where they start, so that loaders can name them in their own errors; `check_label` checks a
value against a task's declared labels. All errors are `TaskDataError` (a `ValueError`).
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path


class TaskDataError(ValueError):
    """Task data is missing or malformed; the message says where and how to fix it."""


class TaskDataWarning(UserWarning):
    """Task data has a known flaw that its declaration allows (e.g. test prompts also in train upstream)."""


def fix_hint(task: str | None) -> str:
    """How to fix a task's bad data file: the end of every data error (loaders use it too)."""
    return (f"check it with `scd data verify {task}` and re-fetch it with `scd data fetch {task}`, or check the "
            f"data directory" if task else "re-fetch the file or check the data directory")


def _where(path: Path, task: str | None) -> str:
    return f"task {task!r}: {path}" if task else str(path)


def read_text(path: Path, task: str | None = None) -> str:
    """The file as strict UTF-8 (a UTF-8 BOM is dropped). A byte that is not UTF-8 is reported with its 1-based line
    and column (the column counts characters, as an editor does) and its hex value."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TaskDataError(f"{_where(path, task)}: file not found; {fix_hint(task)}") from None
    except OSError as e:
        raise TaskDataError(f"{_where(path, task)}: cannot read the file ({e.strerror or e}); "
                            f"{fix_hint(task)}") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # the BOM (not decoded with utf-8-sig: its error offsets skip the BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = raw.rfind(b"\n", 0, e.start) + 1
        line = raw.count(b"\n", 0, e.start) + 1
        column = len(raw[line_start:e.start].decode("utf-8")) + 1  # the bytes before the first bad one decode
        raise TaskDataError(f"{_where(path, task)}: line {line}, column {column}: byte 0x{raw[e.start]:02x} is not "
                            f"valid UTF-8 (the file must be UTF-8); re-encode the file as UTF-8 or "
                            f"{fix_hint(task)}") from None


def read_table(path: Path, required: list[str], delimiter: str = ",", task: str | None = None) -> list[dict]:
    """A header line, then rows -> [{column: value, ..., "_line": the file line where the row starts}].

    With delimiter "\\t" the file is a TSV read with `csv.QUOTE_NONE` (quote characters are text); otherwise a CSV with
    the default quoting (quoted cells may hold the delimiter and newlines). Blank lines are skipped. Errors: no
    header; a `required` column missing from the header; a repeated column name; a row with more or fewer fields than
    the header; an unterminated quoted cell; no data rows."""
    path = Path(path)
    where = _where(path, task)
    if delimiter == "\t":
        options = {"quoting": csv.QUOTE_NONE}
    else:
        options = {"quoting": csv.QUOTE_MINIMAL, "strict": True}
    reader = csv.reader(io.StringIO(read_text(path, task), newline=""), delimiter=delimiter, **options)
    start = 1  # the file line where the record being read starts
    try:
        header = next(reader, None)
        if header is None:
            raise TaskDataError(f"{where}: the file is empty (no header line); {fix_hint(task)}")
        missing = [c for c in required if c not in header]
        if missing:
            raise TaskDataError(f"{where}: line 1 (the header): missing required column(s) {missing}; the header "
                                f"found is {header} (delimiter {delimiter!r}); {fix_hint(task)}")
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise TaskDataError(f"{where}: line 1 (the header): column(s) {repeated} appear more than once in "
                                f"{header}; {fix_hint(task)}")
        rows = []
        start = reader.line_num + 1
        for fields in reader:
            if not fields:  # a blank line
                start = reader.line_num + 1
                continue
            if len(fields) != len(header):
                more = "more" if len(fields) > len(header) else "fewer"
                raise TaskDataError(
                    f"{where}: data row {len(rows) + 1} (line {start}) has {len(fields)} fields, {more} than the "
                    f"{len(header)} of the header {header}"
                    + (" (a stray tab in a text?)" if delimiter == "\t" and more == "more" else "")
                    + f"; {fix_hint(task)}")
            rows.append(dict(zip(header, fields)) | {"_line": start})
            start = reader.line_num + 1
    except csv.Error as e:
        raise TaskDataError(f"{where}: data row starting at line {start}: {e} (an unbalanced quote?); "
                            f"{fix_hint(task)}") from None
    if not rows:
        raise TaskDataError(f"{where}: the table is empty (a header, no data rows); {fix_hint(task)}")
    return rows


def read_lines(path: Path, task: str | None = None) -> list[str]:
    """The file's lines without their newline ("\\n" or "\\r\\n"); a final empty line (after the last newline) is
    dropped. Only "\\n" ends a line (not the Unicode line separators that `str.splitlines` also splits on)."""
    lines = read_text(path, task).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_conll(path: Path, labels: list[str] | None = None, task: str | None = None) -> list[dict]:
    """`token<TAB>tag` lines, a blank line between sentences -> [{"tokens", "tags", "_line": its first line}].

    A tag outside `labels` (when given) is an error; the tag sequence is not otherwise checked (an I- tag after O is
    kept: seqeval reads it as the start of a mention)."""
    path = Path(path)
    where = _where(path, task)
    sentences, tokens, tags, first = [], [], [], None
    for n, line in enumerate(read_lines(path, task), 1):
        if not line.strip():
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags, "_line": first})
            tokens, tags, first = [], [], None
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise TaskDataError(f"{where}: line {n}: expected `token<TAB>tag` (2 tab-separated fields), got "
                                f"{len(fields)} field(s) in {line[:80]!r}; {fix_hint(task)}")
        token, tag = fields
        if labels is not None and tag not in labels:
            raise TaskDataError(f"{where}: line {n}: tag {tag!r} (token {token!r}) is not one of the declared labels "
                                f"{list(labels)}; fix the file ({fix_hint(task)}) or the task declaration's `labels`")
        if first is None:
            first = n
        tokens.append(token)
        tags.append(tag)
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags, "_line": first})
    if not sentences:
        raise TaskDataError(f"{where}: no sentences (the file is empty or blank); {fix_hint(task)}")
    return sentences


def read_json(path: Path, task: str | None = None, expect: type | None = None):
    """The file's JSON value (decoded by `read_text`); malformed JSON is reported with its line and column, a top-level
    value that is not an `expect` (e.g. dict) as such."""
    path = Path(path)
    try:
        value = json.loads(read_text(path, task))
    except json.JSONDecodeError as e:
        raise TaskDataError(f"{_where(path, task)}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg}); "
                            f"{fix_hint(task)}") from None
    if expect is not None and not isinstance(value, expect):
        raise TaskDataError(f"{_where(path, task)}: expected a JSON {'object' if expect is dict else expect.__name__} "
                            f"at the top level, got {type(value).__name__}; {fix_hint(task)}")
    return value


def check_label(value: str, labels: list[str], where: str) -> str:
    """`value` if it is one of `labels`; else a TaskDataError starting with `where` (e.g. "path:line")."""
    if value not in labels:
        raise TaskDataError(f"{where}: label {value!r} is not one of the declared labels {list(labels)}; fix the row "
                            f"or the task declaration's `labels`")
    return value
