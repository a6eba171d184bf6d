"""PubMedQA loader: the official 500-question test set; train and validation from the other 500 (stratified by
label, seeded). The prompt template and its truncation rule are in pubmedqa.yaml."""
from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

LABELS = ("yes", "no", "maybe")


def _row(task, pmid: str, item: dict, where: str) -> dict:
    for key in ("QUESTION", "CONTEXTS", "final_decision"):
        if key not in item:
            raise ValueError(f"{where}: entry {pmid} lacks the field {key!r}")
    label = item["final_decision"]
    if label not in LABELS:
        raise ValueError(f"{where}: entry {pmid} has label {label!r}, expected one of {LABELS}")
    contexts = item["CONTEXTS"]
    if not isinstance(contexts, list):
        raise ValueError(f"{where}: entry {pmid} field CONTEXTS must be a list of strings")
    return task.render({"context": " ".join(contexts), "question": item["QUESTION"], "label": label},
                       id=pmid, label=label)


def _read_json(path: Path) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping PMID to entry")
    return data


def load(task, data_dir: Path, opt: dict) -> dict[str, list[dict]]:
    folder = task.task_dir(data_dir)
    items = _read_json(folder / "ori_pqal.json")
    test_ids = _read_json(folder / "test_ground_truth.json")
    unknown = sorted(set(test_ids) - set(items))
    if unknown:
        raise ValueError(f"{folder / 'test_ground_truth.json'}: PMIDs not in ori_pqal.json: {unknown[:5]}")
    where = str(folder / "ori_pqal.json")
    test = [_row(task, p, items[p], where) for p in sorted(test_ids)]

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
    train = [_row(task, p, items[p], where) for p in sorted(rest) if p not in val_ids]
    val = [_row(task, p, items[p], where) for p in sorted(val_ids)]
    rng.shuffle(train)
    return {"train": train, "validation": val, "test": test}
