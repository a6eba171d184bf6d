"""Evaluation: produce answers (greedy generation or option scoring), parse them, score them.

Every sample's record keeps its subdomain, parsed prediction, gold answer and gold-answer NLL (mean over response
tokens), so later analyses (the TFS/SFS partition of the method doc) need no second pass over the model.
"""
from __future__ import annotations

from collections import defaultdict

import torch

from scd.data import Encoded, collate, encode
from scd.models import forward_responses
from scd.prepared import Prepared
from scd.runtime import autocast
from scd.tokens import per_sample_mean, response_mask, token_ce


@torch.no_grad()
def gold_nll(model, encoded: list[Encoded], pad_id: int, batch_size: int, device) -> list[float]:
    out: list[float] = []
    for start in range(0, len(encoded), batch_size):
        batch = {k: v.to(device) for k, v in collate(encoded[start: start + batch_size], pad_id).items()}
        output, labels = forward_responses(model, batch)
        out += per_sample_mean(token_ce(output.logits, labels), response_mask(labels)).tolist()
    return out


@torch.no_grad()
def response_logits(model, rows: list[Encoded], pad_id: int, vocab: int, batch_size: int, device,
                    precision: str = "fp32", with_hidden: bool = False):
    """Logits at the response positions of `rows`, concatenated in row order: [sum len(answer_ids), vocab]; with
    `with_hidden` also the last layer's hidden states there, [sum len(answer_ids), hidden]."""
    logits_out, hidden_out = [torch.zeros(0, vocab)], [torch.zeros(0, model.config.hidden_size)]
    for start in range(0, len(rows), batch_size):
        batch = {k: v.to(device) for k, v in collate(rows[start: start + batch_size], pad_id).items()}
        with autocast(precision, device):
            out, labels = forward_responses(model, batch, output_hidden_states=with_hidden)
        mask = response_mask(labels)
        logits_out.append(out.logits[..., :vocab].float()[mask].cpu())
        if with_hidden:  # hidden states cover every position: cut them to the logits' columns
            hidden = out.hidden_states[-1][:, response_mask(batch["labels"]).any(0)]
            hidden_out.append(hidden.float()[mask].cpu())
    return (torch.cat(logits_out), torch.cat(hidden_out)) if with_hidden else torch.cat(logits_out)


@torch.no_grad()
def generate_ids(model, prompts: list[list[int]], pad: int, eos: int, max_new_tokens: int, device,
                 **sampling) -> list[list[int]]:
    """Continuations of left-padded prompts, each cut after its first EOS (kept). Greedy unless `sampling`
    says otherwise (e.g. do_sample=True, temperature=1.0)."""
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    out = model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=max_new_tokens,
                         **({"do_sample": False} | sampling), pad_token_id=pad, eos_token_id=eos)
    return [row[: row.index(eos) + 1] if eos in row else row for row in out[:, width:].tolist()]


@torch.no_grad()
def generate(model, tokenizer, encoded: list[Encoded], max_new_tokens: int, batch_size: int, device) -> list[str]:
    """Greedy decoding from left-padded prompts; the text up to the first EOS."""
    eos = tokenizer.eos_token_id
    texts: list[str] = []
    for start in range(0, len(encoded), batch_size):
        prompts = [e.prompt_ids for e in encoded[start: start + batch_size]]
        for row in generate_ids(model, prompts, tokenizer.pad_token_id, eos, max_new_tokens, device):
            texts.append(tokenizer.decode(row[:-1] if row and row[-1] == eos else row, skip_special_tokens=True))
    return texts


@torch.no_grad()
def choose(model, tokenizer, task, rows: list[dict], max_length: int, batch_size: int, device) -> list[str]:
    """Option scoring: per row, the choice whose answer text (the task's answer format, then EOS) gets the highest
    total log-probability after the prompt. A row may narrow the task's choices (`choices`: e.g. RRTNM's N and M
    questions have fewer options than T)."""
    per_row = [row.get("choices") or task.choices() for row in rows]
    options = [dict(row, answer=task.answer_for(c)) for row, cs in zip(rows, per_row) for c in cs]
    encoded = encode(options, tokenizer, max_length)
    scores: list[float] = []
    for start in range(0, len(encoded), batch_size):
        rows_ = collate(encoded[start: start + batch_size], tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in rows_.items()}
        output, labels = forward_responses(model, batch)
        scores += (-token_ce(output.logits, labels).sum(-1)).tolist()
    out, at = [], 0
    for cs in per_row:
        mine = scores[at: at + len(cs)]
        out.append(cs[max(range(len(cs)), key=mine.__getitem__)])
        at += len(cs)
    return out


def evaluation_mode(task, mode: str | None = "task") -> str:
    """The task's declared mode unless the config's `evaluation.mode` asks for generate or choices."""
    mode = task.evaluation["mode"] if mode in (None, "task") else mode
    if mode == "choices" and not task.choices():
        raise ValueError(f"task {task.name!r} declares no choices or labels: it cannot be scored by option scoring; "
                         f"use evaluation.mode generate or task")
    return mode


def predict(model, tokenizer, task, rows: list[dict], max_length: int, batch_size: int, device,
            with_nll: bool = True, mode: str | None = None) -> list[dict]:
    """Per-row records: generated (or chosen) output, parsed prediction, gold, and the gold answer's NLL."""
    model.eval()
    mode = mode or task.evaluation["mode"]
    encoded = encode(rows, tokenizer, max_length)
    if mode == "generate":
        raw = generate(model, tokenizer, encoded, task.evaluation.get("max_new_tokens", 8), batch_size, device)
        preds = [task.parse(t) for t in raw]
    elif mode == "choices":
        raw = choose(model, tokenizer, task, rows, max_length, batch_size, device)
        preds = raw  # already a declared choice: nothing to parse
    else:
        raise ValueError(f"task {task.name!r}: unknown evaluation mode {mode!r}; use generate or choices")
    golds = [task.gold(r) for r in rows]
    nll = gold_nll(model, encoded, tokenizer.pad_token_id, batch_size, device) if with_nll else [None] * len(rows)
    return [{"id": r["id"], "subdomain": r.get("subdomain"), "output": t, "pred": p, "gold": g,
             "correct": p == g, "gold_nll": n}
            for r, t, p, g, n in zip(rows, raw, preds, golds, nll)]


def summarize(task, records: list[dict], rows: list[dict]) -> dict:
    """Every task metric overall and per subdomain (where rows carry one), with counts; `score` is the headline
    metric's value."""
    def scores(idx: list[int]) -> dict[str, float]:
        return task.scores([records[i]["pred"] for i in idx], [records[i]["gold"] for i in idx], [rows[i] for i in idx])

    overall = scores(list(range(len(records))))
    summary = {"metric": task.metric, "score": overall[task.metric], "scores": overall,
               "directions": {m["key"]: m["direction"] for m in task.metric_specs}, "n": len(records),
               "subdomains": {}}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.get("subdomain"):
            groups[r["subdomain"]].append(i)
    for name, idx in sorted(groups.items()):
        sub = scores(idx)
        summary["subdomains"][name] = {"score": sub[task.metric], "scores": sub, "n": len(idx)}
    nlls = [r["gold_nll"] for r in records if r.get("gold_nll") is not None]
    if nlls:
        summary["mean_gold_nll"] = sum(nlls) / len(nlls)
    return summary


def validator(prep: Prepared, batch_size: int, mode: str, precision: str, device):
    """The epoch-end validation score of training: the task's headline metric on the validation split."""
    rows = prep.rows("validation")
    mode = evaluation_mode(prep.task, mode)

    def validate(model) -> float:
        with autocast(precision, device):
            recs = predict(model, prep.tokenizer, prep.task, rows, prep.task.max_length, batch_size, device,
                           with_nll=False, mode=mode)
        return prep.task.score([r["pred"] for r in recs], [r["gold"] for r in recs], rows)

    return validate
