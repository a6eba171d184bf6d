"""NCBI-disease loader: CoNLL sentences -> prompt (the tokens joined by spaces) and the gold mention list; rows keep
`tokens` and `tags`, which the seqeval metrics score predicted mentions against."""
from __future__ import annotations

from pathlib import Path

from tasks.readers import read_conll


def mentions(tokens: list[str], tags: list[str]) -> list[str]:
    """The B-/I- spans as strings, unique, in order of first occurrence (an I- after O starts a span, as seqeval
    reads it)."""
    out, span = [], []
    for token, tag in zip(tokens, tags):
        if tag.startswith("B-") or (tag.startswith("I-") and not span):
            if span:
                out.append(" ".join(span))
            span = [token]
        elif tag.startswith("I-"):
            span.append(token)
        else:
            if span:
                out.append(" ".join(span))
            span = []
    if span:
        out.append(" ".join(span))
    return list(dict.fromkeys(out))


def load(task, data_dir: Path, opt: dict) -> dict[str, list[dict]]:
    splits = {}
    for split, name in task.columns.items():
        sentences = read_conll(task.file(data_dir, name), task.labels, task=task.name)
        rows = []
        for i, s in enumerate(sentences):
            entities = mentions(s["tokens"], s["tags"])
            rows.append(task.render({"text": " ".join(s["tokens"]), "entities": repr(entities)},
                                    id=f"{split}-{i:05d}", entities=entities, tokens=s["tokens"], tags=s["tags"]))
        splits[split] = rows
    return splits
