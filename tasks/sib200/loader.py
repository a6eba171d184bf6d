"""SIB-200 loader: one language's official train/dev/test TSVs (index_id, category, text) -> rows."""
from __future__ import annotations

from pathlib import Path

from tasks.readers import check_label, read_table


def load(task, data_dir: Path, opt: dict) -> dict[str, list[dict]]:
    cols, splits = task.columns, {}
    for split in ("train", "validation", "test"):
        path = task.file(data_dir, f"{task.language}/{cols[split]}")
        rows = []
        for r in read_table(path, [cols["id"], cols["label"], cols["text"]], delimiter="\t", task=task.name):
            label = check_label(r[cols["label"]].strip(), task.labels, f"{path}:{r['_line']}")
            rows.append(task.render({"text": r[cols["text"]].strip(), "label": label},
                                    id=f"{split}-{r[cols['id']]}", label=label))
        splits[split] = rows
    return splits
