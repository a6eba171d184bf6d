"""Prepared task data on disk (JSON lines) and its tensor form for training.

Convention (pinned here, used by every loss): the collator pre-shifts labels, so `labels[:, t]` is the token that
`logits[:, t]` must predict, and -100 marks positions that are not response tokens (prompt, padding, last position).
Prompts longer than the model's budget are cut by `fit_prompt`'s rule: a task's truncatable field (a document) goes
first, then tokens from the prompt's start. A prompt reaches the model in its tokenizer's `prompt_format` (set from the
prepared data's manifest, scd/prepared.py): `chat` wraps it in the chat template as one user turn followed by the
assistant cue (the answer then starts with its content, without the leading space a plain answer cue wants), `plain`
puts the text alone, after BOS where the tokenizer adds one; truncation never cuts the wrap.
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


PREPARED_REMEDY = "re-run `scd prepare` for its task (or delete the task's data directory and rerun the workflow)"


def read_jsonl(path: Path, remedy: str = PREPARED_REMEDY) -> list[dict]:
    """The rows of a JSON-lines file. A malformed line (a truncated or edited file) is a ValueError naming the file
    and the line, and ending with `remedy`: what rewrites this file (the default is for prepared splits)."""
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:  # cut inside a character
        raise ValueError(f"{path}: not UTF-8 text at byte {e.start}: {remedy}") from None
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: malformed JSON line ({e}): {remedy}") from None
    return rows


@dataclass
class Encoded:
    prompt_ids: list[int]
    answer_ids: list[int]   # answer tokens followed by EOS
    labelled: bool = True   # False for transfer-set rows, whose answer is a teacher's output, not a gold label


def _prompt_pieces(rows: list[dict]) -> list[list[str]]:
    """[head, field, tail] for rows with a truncatable field, [prompt] for the others."""
    out = []
    for r in rows:
        if r.get("truncate"):
            a, b = r["truncate"]["span"]
            out.append([r["prompt"][:a], r["prompt"][a:b], r["prompt"][b:]])
        else:
            out.append([r["prompt"]])
    return out


def fit_prompt(pieces: list[list[int]], budget: int, keep: str = "start") -> list[int]:
    """The documented truncation rule. A prompt with a truncatable field (a task's `prompt.truncate`: the document
    or abstract) first loses that field's tokens: from its end (keep: start) or its start (keep: end), so the
    instruction, the question and the options around it stay whole. If the prompt is still too long, or has no
    such field, it loses tokens from its start, which keeps the question and answer cue that templates put last."""
    if len(pieces) == 3:
        head, body, tail = pieces
        room = max(budget - len(head) - len(tail), 0)
        if len(body) > room:
            body = body[:room] if keep == "start" else body[len(body) - room:]
        pieces = [head, body, tail]
    prompt = [t for piece in pieces for t in piece]
    return prompt[-budget:]


PROMPT_FORMATS = ("plain", "chat")
_MARK = "\u2063scd-prompt\u2063"  # stands for the prompt inside the rendered chat template


def resolve_prompt_format(tokenizer, wanted: str = "auto") -> str:
    """`auto` -> chat if the tokenizer has a chat template (instruct models), else plain; chat without a template
    is refused."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if wanted == "auto":
        return "chat" if has_template else "plain"
    if wanted not in PROMPT_FORMATS:
        raise ValueError(f"tokenizer.prompt_format {wanted!r}: use auto, plain or chat")
    if wanted == "chat" and not has_template:
        raise ValueError("tokenizer.prompt_format chat: this tokenizer has no chat template (a tokenizer trained on "
                         "the task, or a base model's); use plain or auto")
    return wanted


def prompt_wrap(tokenizer) -> tuple[list[int], list[int]]:
    """The token ids before and after every prompt's own tokens, in the tokenizer's `prompt_format`: the chat
    template rendered for one user turn with the generation prompt (the assistant cue), split around the prompt; or
    the BOS a plain call of the tokenizer adds (none for the tokenizers trained here)."""
    if getattr(tokenizer, "prompt_format", "plain") == "chat":
        text = tokenizer.apply_chat_template([{"role": "user", "content": _MARK}], tokenize=False,
                                             add_generation_prompt=True)
        if text.count(_MARK) != 1:
            raise ValueError("the tokenizer's chat template does not place a user message once; set "
                             "tokenizer.prompt_format: plain")
        before, after = text.split(_MARK)
        ids = tokenizer([before, after], add_special_tokens=False)["input_ids"]
        return ids[0], ids[1]
    bos = getattr(tokenizer, "bos_token_id", None)
    plain = tokenizer("a", add_special_tokens=True)["input_ids"]
    return ([bos] if bos is not None and plain[:1] == [bos] else []), []


def encode(rows: list[dict], tokenizer, max_length: int) -> list[Encoded]:
    if not rows:
        return []
    before, after = prompt_wrap(tokenizer)
    chat = getattr(tokenizer, "prompt_format", "plain") == "chat"
    # one batched call per field: row-by-row calls cost seconds per job, a tenth of a small model's distillation;
    # an assistant turn starts with its content, so the space a plain answer cue ("Sentiment:") wants goes in chat
    answers = tokenizer([r["answer"].lstrip() if chat else r["answer"] for r in rows],
                        add_special_tokens=False)["input_ids"]
    pieces = _prompt_pieces(rows)
    flat = tokenizer([p for ps in pieces for p in ps], add_special_tokens=False)["input_ids"]
    out, at = [], 0
    for row, answer, ps in zip(rows, answers, pieces):
        ids, at = flat[at: at + len(ps)], at + len(ps)
        answer = answer + [tokenizer.eos_token_id]
        budget = max_length - len(answer) - len(before) - len(after)
        if budget < 1:
            raise ValueError(f"row {row['id']}: the answer ({len(answer)} tokens) and the prompt's "
                             f"{getattr(tokenizer, 'prompt_format', 'plain')} wrap ({len(before) + len(after)}) leave "
                             f"no room for the prompt within max_length {max_length}; raise max_length")
        prompt = fit_prompt(ids, budget, (row.get("truncate") or {}).get("keep", "start"))
        out.append(Encoded(before + prompt + after, answer))
    return out


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch with pre-shifted labels on response positions."""
    length = max(len(e.prompt_ids) + len(e.answer_ids) for e in items)
    ids, labels, attn = [], [], []
    for e in items:  # lists first, one tensor each at the end: per-row tensors dominate a tiny model's step
        seq, p = e.prompt_ids + e.answer_ids, len(e.prompt_ids)
        pad = length - len(seq)
        ids.append(seq + [pad_id] * pad)
        attn.append([1] * len(seq) + [0] * pad)
        # logits at t predict token t+1: the answer's tokens sit at positions p-1 .. n-2
        labels.append([IGNORE] * (p - 1) + e.answer_ids + [IGNORE] * (pad + 1))
    return {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(attn, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
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
