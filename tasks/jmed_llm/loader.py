"""JMED-LLM loaders: the CSVs of `datasets/all/` -> rows, then the task's seeded stratified split.

Choice files have `tag,question,optionA..optionD[,optionE],answer` (answer = option letter); NER files have
`tag,question,answer` with `answer` a Python-list literal of entity strings (parsed with ast.literal_eval). A
question about a document quotes it as 「...」 after the question proper; the document is the prompt's truncatable
field and the unit the split keeps together.
"""
from __future__ import annotations

import ast
from pathlib import Path

from tasks.readers import TaskDataError, check_label, read_table
from tasks.splits import stratified_split

LETTERS = "ABCDEFGH"


def question_and_document(text: str) -> tuple[str, str]:
    """'質問…？\\n「report」' -> ('質問…？', '\\n「report」'); a question without a quoted document -> (text, '')."""
    at = text.find("\n「")
    return (text, "") if at < 0 else (text[:at], text[at:])


def _split(task, rows: list[dict], opt: dict) -> dict[str, list[dict]]:
    rule = task.split
    splits = stratified_split(rows, rule["fractions"], opt["split_seed"], by=lambda r: r[rule["by"]],
                              group=lambda r: r["document"] or r["id"])
    for split_rows in splits.values():
        for r in split_rows:
            del r["document"]  # only the split needed it; the prompt holds the text
    return splits


def load_choice(task, data_dir: Path, opt: dict) -> dict[str, list[dict]]:
    cols = task.columns
    path = task.file(data_dir, cols["file"])
    table = read_table(path, [cols["tag"], cols["question"], *cols["options"], cols["answer"]], task=task.name)
    rows = []
    for i, r in enumerate(table):
        where = f"{path}:{r['_line']}"
        options = [(LETTERS[k], r[c].strip()) for k, c in enumerate(cols["options"]) if r[c].strip()]
        letters = [letter for letter, _ in options]
        label = check_label(r[cols["answer"]].strip(), task.labels, where)
        if label not in letters:
            raise TaskDataError(f"{where}: the answer {label!r} names an empty option (options given: {letters}); "
                                f"the row is malformed, re-fetch the file with `scd data fetch {task.name}`")
        question, document = question_and_document(r[cols["question"]])
        fields = {"question": question, "document": document, "label": label,
                  "options": "\n".join(f"{letter}. {text}" for letter, text in options)}
        rows.append(task.render(fields, id=f"{task.name}-{i:05d}", label=label, tag=r[cols["tag"]],
                                choices=letters, document=document))
    return _split(task, rows, opt)


def parse_entities(text: str, where: str) -> list[str]:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        raise TaskDataError(f"{where}: the answer {text[:80]!r} is not a Python list literal of strings") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TaskDataError(f"{where}: the answer must be a list of strings, got {type(value).__name__} {text[:80]!r}")
    return list(dict.fromkeys(v.strip() for v in value if v.strip()))  # unique, in order


def load_entities(task, data_dir: Path, opt: dict) -> dict[str, list[dict]]:
    cols = task.columns
    path = task.file(data_dir, cols["file"])
    table = read_table(path, [cols["tag"], cols["question"], cols["answer"]], task=task.name)
    rows = []
    for i, r in enumerate(table):
        entities = parse_entities(r[cols["answer"]], f"{path}:{r['_line']}")
        question, document = question_and_document(r[cols["question"]])
        rows.append(task.render({"question": question, "document": document, "entities": repr(entities)},
                                id=f"{task.name}-{i:05d}", tag=r[cols["tag"]], entities=entities,
                                document=document))
    return _split(task, rows, opt)
