"""PubMedQA loader: the official 500-question test set; train and validation from the other 500 (stratified by
label, seeded). The prompt template and its truncation rule are in pubmedqa.yaml."""
from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from tasks.readers import TaskDataError, fix_hint, read_json

LABELS = ("yes", "no", "maybe")


def _check(task, pmid: str, item, where: str) -> None:
    if not isinstance(item, dict):
        raise TaskDataError(f"{where}: entry {pmid} must be a JSON object, got {type(item).__name__}; "
                            f"{fix_hint(task.name)}")
    for key in ("QUESTION", "CONTEXTS", "final_decision"):
        if key not in item:
            raise TaskDataError(f"{where}: entry {pmid} lacks the field {key!r}; {fix_hint(task.name)}")
    if item["final_decision"] not in LABELS:
        raise TaskDataError(f"{where}: entry {pmid} has label {item['final_decision']!r}, expected one of {LABELS}; "
                            f"{fix_hint(task.name)}")
    contexts = item["CONTEXTS"]
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise TaskDataError(f"{where}: entry {pmid} field CONTEXTS must be a list of strings; {fix_hint(task.name)}")


def _row(task, pmid: str, item: dict) -> dict:
    label, contexts = item["final_decision"], item["CONTEXTS"]
    return task.render({"context": " ".join(contexts), "question": item["QUESTION"], "label": label},
                       id=pmid, label=label)


def load(task, data_dir: Path, opt: dict) -> dict[str, list[dict]]:
    folder = task.task_dir(data_dir)
    items = read_json(folder / "ori_pqal.json", task.name, dict)
    test_ids = read_json(folder / "test_ground_truth.json", task.name, dict)
    unknown = sorted(set(test_ids) - set(items))
    if unknown:
        raise TaskDataError(f"task {task.name!r}: {folder / 'test_ground_truth.json'}: PMIDs not in ori_pqal.json: "
                            f"{unknown[:5]}; {fix_hint(task.name)}")
    where = f"task {task.name!r}: {folder / 'ori_pqal.json'}"
    for pmid, item in items.items():  # every entry, before the split reads their labels
        _check(task, pmid, item, where)
    test = [_row(task, p, items[p]) for p in sorted(test_ids)]

    # Stratified validation split of the non-test questions: n_val spread over labels in proportion, seeded.
    by_label: dict[str, list[str]] = defaultdict(list)
    for pmid in sorted(set(items) - set(test_ids)):
        by_label[items[pmid]["final_decision"]].append(pmid)
    rng = random.Random(opt["split_seed"])
    total = sum(len(v) for v in by_label.values())
    val_ids: set[str] = set()
    for label in LABELS:
        ids = by_label.get(label, [])
        rng.shuffle(ids)
        val_ids.update(ids[: round(opt["n_val"] * len(ids) / total)])
    rest = [p for label in LABELS for p in by_label.get(label, [])]
    train = [_row(task, p, items[p]) for p in sorted(rest) if p not in val_ids]
    val = [_row(task, p, items[p]) for p in sorted(val_ids)]
    rng.shuffle(train)
    return {"train": train, "validation": val, "test": test}
