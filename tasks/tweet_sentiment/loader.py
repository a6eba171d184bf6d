"""Tweet sentiment loader: aligned `<split>_text.txt` / `<split>_labels.txt` lines -> rows (labels 0/1/2 are the
declared labels in order)."""
from __future__ import annotations

from pathlib import Path

from tasks.readers import TaskDataError, read_lines


def load(task, data_dir: Path, opt: dict) -> dict[str, list[dict]]:
    cols, splits = task.columns, {}
    codes = {str(i): label for i, label in enumerate(task.labels)}
    for split in ("train", "validation", "test"):
        text_path = task.file(data_dir, f"{task.language}/" + cols["text"].format(split=cols[split]))
        label_path = task.file(data_dir, f"{task.language}/" + cols["label"].format(split=cols[split]))
        texts, labels = read_lines(text_path, task=task.name), read_lines(label_path, task=task.name)
        if len(texts) != len(labels):
            raise TaskDataError(f"{text_path} has {len(texts)} lines but {label_path} has {len(labels)}: the two files "
                                f"must align line by line; re-fetch them with `scd data fetch {task.name}`")
        rows = []
        for n, (text, code) in enumerate(zip(texts, labels), 1):
            if code.strip() not in codes:
                raise TaskDataError(f"{label_path}:{n}: label {code.strip()!r} is not one of the declared codes "
                                    f"{sorted(codes)} ({', '.join(task.labels)})")
            label = codes[code.strip()]
            rows.append(task.render({"text": text.strip(), "label": label}, id=f"{split}-{n:05d}", label=label))
        splits[split] = rows
    return splits
