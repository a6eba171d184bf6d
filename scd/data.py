"""Prepared task data on disk (JSON lines) and its tensor form for training.

Convention (pinned here, used by every loss): the collator pre-shifts labels, so `labels[:, t]` is the token that
`logits[:, t]` must predict, and -100 marks positions that are not response tokens (prompt, padding, last position).
Prompts longer than the model's budget lose tokens from their start, which keeps the question and answer cue that
task templates put last.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

IGNORE = -100


def write_jsonl(path: Path, rows: list[dict]) -> str:
    """Write rows and return the sha256 of the file (logged so a split can be identified)."""
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    Path(path).write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_json(path: str | Path, obj) -> None:
    """Write JSON atomically: a killed job never leaves a half-written result behind."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")
    tmp.replace(path)


@contextmanager
def atomic_dir(out: Path):
    """Yield `<out>.partial` to write into; on success it replaces `out`, so `out` exists only when complete
    (a killed job leaves no half-written output for Snakemake to take as done)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: malformed JSON line ({e}); re-run `scd prepare`") from None
    return rows


@dataclass
class Encoded:
    prompt_ids: list[int]
    answer_ids: list[int]   # answer tokens followed by EOS
    labelled: bool = True   # False for transfer-set rows, whose answer is a teacher's output, not a gold label


def encode(rows: list[dict], tokenizer, max_length: int) -> list[Encoded]:
    out = []
    for row in rows:
        answer = tokenizer(row["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        budget = max_length - len(answer)
        if budget < 1:
            raise ValueError(f"row {row['id']}: the answer alone ({len(answer)} tokens) exceeds max_length {max_length}")
        out.append(Encoded(prompt[-budget:], answer))
    return out


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch with pre-shifted labels on response positions."""
    length = max(len(e.prompt_ids) + len(e.answer_ids) for e in items)
    ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    labels = torch.full((len(items), length), IGNORE, dtype=torch.long)
    attn = torch.zeros((len(items), length), dtype=torch.long)
    for i, e in enumerate(items):
        seq = e.prompt_ids + e.answer_ids
        n, p = len(seq), len(e.prompt_ids)
        ids[i, :n] = torch.tensor(seq)
        attn[i, :n] = 1
        labels[i, p - 1: n - 1] = torch.tensor(e.answer_ids)  # logits at t predict token t+1
    return {"input_ids": ids, "attention_mask": attn, "labels": labels,
            "labelled": torch.tensor([e.labelled for e in items], dtype=torch.bool)}


def batches(data: list[Encoded], batch_size: int, pad_id: int, *, shuffle: bool, seed: int = 0):
    """Yield (row indices, batch); the indices let per-sample state (e.g. cached losses) follow the rows."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)) if shuffle \
        else torch.arange(len(data))
    for start in range(0, len(data), batch_size):
        idx = order[start: start + batch_size]
        batch = collate([data[i] for i in idx.tolist()], pad_id)
        batch["index"] = idx
        yield batch
