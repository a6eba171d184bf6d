"""Evaluation: produce answers (greedy generation or option scoring), parse them, score them.

Every sample's record keeps its subdomain, parsed prediction, gold answer and gold-answer NLL (mean over response
tokens), so later analyses (the TFS/SFS partition of the method doc) need no second pass over the model; on a task
scored at entity level it keeps the row's entity counts too (`item_statistics`), which the leaderboard's bootstrap
sums over resampled rows.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from scd.data import Encoded, collate, encode
from scd.models import forward_responses
from scd.prepared import Prepared
from scd.runtime import autocast
from scd.tokens import nll, per_sample_mean, response_mask, token_ce
from tasks.metrics import ENTITY_COUNT_METRICS, entity_counts


def by_length(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Batches of row indices, longest rows first, so that each batch's rows are of similar length and little of
    it is padding; callers put results back in row order. Stable: rows of equal length keep their order."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[s: s + batch_size] for s in range(0, len(order), batch_size)]


@torch.no_grad()
def gold_nll(model, encoded: list[Encoded], pad_id: int, batch_size: int, device) -> list[float]:
    """Per row, the mean NLL of its answer tokens (EOS included) after its prompt, teacher-forced."""
    out: list[float] = [0.0] * len(encoded)
    for idx in by_length([len(e.prompt_ids) + len(e.answer_ids) for e in encoded], batch_size):
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in idx], pad_id).items()}
        output, labels = forward_responses(model, batch)
        for i, v in zip(idx, per_sample_mean(token_ce(output.logits, labels), response_mask(labels)).tolist()):
            out[i] = v
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
                 do_sample: bool = False, temperature: float = 1.0) -> list[list[int]]:
    """Continuations of left-padded prompts, each cut after its first EOS (kept): greedy, or with `do_sample`
    drawn from the whole distribution at `temperature` (no top-k, no top-p).

    Our own loop over the model's KV cache, one forward per new token for the whole batch. It makes the forwards
    transformers' `generate` makes (the prompt once, then each new token with the cache; positions counted from
    the attention mask; finished rows continue on padding), takes the same argmax or the same softmax and
    multinomial draw, so it returns the same tokens from the same random state, without `generate`'s per-call
    set-up and per-token bookkeeping, which cost more than a small model's forward."""
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    pos = (attn.cumsum(-1) - 1).masked_fill(attn == 0, 0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1)
    unfinished = torch.ones(len(prompts), dtype=torch.long, device=device)
    new: list[torch.Tensor] = []
    pos = pos[:, -1:]
    for step in range(max_new_tokens):
        logits = out.logits[:, -1].float()
        if do_sample:
            if temperature != 1.0:
                logits = logits / temperature
            token = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1).squeeze(1)
        else:
            token = logits.argmax(-1)
        token = token * unfinished + pad * (1 - unfinished)
        new.append(token)
        unfinished = unfinished & (token != eos).long()
        if step == max_new_tokens - 1 or not unfinished.any():
            break
        attn = torch.cat([attn, attn.new_ones(len(prompts), 1)], dim=-1)
        pos = pos + 1
        out = model(input_ids=token[:, None], attention_mask=attn, position_ids=pos, cache=out.cache,
                    use_cache=True)
    rows = torch.stack(new, dim=1).tolist() if new else [[] for _ in prompts]
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


@torch.no_grad()
def generate(model, tokenizer, encoded: list[Encoded], max_new_tokens: int, batch_size: int, device) -> list[str]:
    """Greedy decoding from left-padded prompts (batched by prompt length); the text up to the first EOS."""
    eos = tokenizer.eos_token_id
    texts: list[str] = [""] * len(encoded)
    for idx in by_length([len(e.prompt_ids) for e in encoded], batch_size):
        prompts = [encoded[i].prompt_ids for i in idx]
        for i, row in zip(idx, generate_ids(model, prompts, tokenizer.pad_token_id, eos, max_new_tokens, device)):
            texts[i] = tokenizer.decode(row[:-1] if row and row[-1] == eos else row, skip_special_tokens=True)
    return texts


def _packed(packs: list[tuple[list[int], list[list[int]]]], pad_id: int, eager: bool):
    """One batch of packs (a prompt and the answers scored after it) laid out as one sequence each: the prompt
    left-padded to a common end, then one slot per answer, each slot as wide as its widest answer in the batch.
    Returns input ids, the 4D attention mask that lets an answer see its prompt and its own earlier tokens only
    (never another answer, never padding), position ids (every answer continues its prompt's positions, as if it
    were alone after it), the logit columns to keep and, per pack and answer, the kept-column indices that predict
    its tokens."""
    width = max(len(p) for p, _ in packs)
    slot = [max((len(a[j]) for _, a in packs if j < len(a)), default=0) for j in range(max(len(a) for _, a in packs))]
    starts = [width + sum(slot[:j]) for j in range(len(slot))]
    length = width + sum(slot)
    ids, seg, pos = [], [], []
    for prompt, answers in packs:
        n = len(prompt)
        row_ids, row_seg, row_pos = [pad_id] * (width - n) + prompt, [-1] * (width - n) + [0] * n, \
            [0] * (width - n) + list(range(n))
        for j, w in enumerate(slot):
            a = answers[j] if j < len(answers) else []
            row_ids += a + [pad_id] * (w - len(a))
            row_seg += [j + 1] * len(a) + [-1] * (w - len(a))
            row_pos += list(range(n, n + len(a))) + [0] * (w - len(a))
        ids.append(row_ids), seg.append(row_seg), pos.append(row_pos)
    seg_t = torch.tensor(seg)
    q = torch.arange(length)
    sk, sq = seg_t[:, None, :], seg_t[:, :, None]
    allowed = (q[:, None] >= q[None, :]) & (sk >= 0) & ((sk == 0) | (sk == sq))
    allowed |= torch.eye(length, dtype=torch.bool)  # padding attends to itself: no empty softmax, no NaN
    mask = allowed[:, None]
    if eager:  # eager attention adds the mask to the scores; SDPA takes it as booleans
        mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    keep = [width - 1] + [c for j, w in enumerate(slot) for c in range(starts[j], starts[j] + w - 1)]
    column = {c: k for k, c in enumerate(keep)}
    predictors = [[[0] + [column[starts[j] + t] for t in range(len(a) - 1)] for j, a in enumerate(answers)]
                  for _, answers in packs]
    return torch.tensor(ids), mask, torch.tensor(pos), torch.tensor(keep), predictors


@torch.no_grad()
def option_token_logprobs(model, packs: list[tuple[list[int], list[list[int]]]], pad_id: int, batch_size: int,
                          device) -> list[list[list[float]]]:
    """Per pack (a prompt and the answers to score after it), per answer, the log-probability of each of its tokens
    after the prompt and its earlier tokens. The prompt is encoded once per pack and every answer scored from one
    forward of the packed sequence (see `_packed`): the same numbers as one forward of prompt + answer per answer,
    at the cost of about one."""
    eager = getattr(model.config, "_attn_implementation", None) == "eager"
    out: list[list[list[float]]] = [[] for _ in packs]
    for idx in by_length([len(p) + sum(map(len, a)) for p, a in packs], batch_size):
        ids, mask, pos, keep, predictors = _packed([packs[i] for i in idx], pad_id, eager)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                       logits_to_keep=keep.to(device), use_cache=False).logits
        rows, cols, targets = [], [], []
        for b, i in enumerate(idx):
            for answer, at in zip(packs[i][1], predictors[b]):
                rows += [b] * len(answer)
                cols += at
                targets += answer
        token = nll(logits[torch.tensor(rows, device=device), torch.tensor(cols, device=device)],
                    torch.tensor(targets, device=device)).tolist()
        at = 0
        for i in idx:
            for answer in packs[i][1]:
                out[i].append([-v for v in token[at: at + len(answer)]])
                at += len(answer)
    return out


def option_scores(model, packs: list[tuple[list[int], list[list[int]]]], pad_id: int, batch_size: int,
                  device) -> list[list[float]]:
    """Per pack, each answer's total log-probability after the prompt (every token of it: see
    `option_token_logprobs`)."""
    return [[sum(t) for t in answers] for answers in option_token_logprobs(model, packs, pad_id, batch_size, device)]


def option_chars(task, choice: str) -> int:
    """The character length that `acc_norm` divides an option's log-likelihood by: its answer text without the
    leading whitespace that separates it from the prompt (lm-evaluation-harness measures `len(choice)`, its
    target delimiter " " not included); at least 1."""
    return max(len(task.answer_for(choice).lstrip()), 1)


@dataclass
class ChoiceScores:
    """Option scoring of some rows. Per row: its `choices`; `loglik`, each choice's log-likelihood as
    lm-evaluation-harness scores an option (the answer text's tokens after the prompt, the end-of-sequence token
    the suite appends to answers not included); `with_eos`, the same with that token (a sequence's whole NLL, as
    training sees it); `chars`, the character lengths `acc_norm` divides by; `encoded`, each choice's (prompt,
    answer) encoding."""
    choices: list[list[str]]
    loglik: list[list[float]]
    with_eos: list[list[float]]
    chars: list[list[int]]
    encoded: list[list[Encoded]]

    def best(self) -> list[str]:
        """Per row, the choice of highest log-likelihood (lm-eval's `acc`)."""
        return [best_choice(cs, ll) for cs, ll in zip(self.choices, self.loglik)]

    def best_norm(self) -> list[str]:
        """Per row, the choice of highest log-likelihood per character (lm-eval's `acc_norm`)."""
        return [best_choice(cs, [x / n for x, n in zip(ll, ns)])
                for cs, ll, ns in zip(self.choices, self.loglik, self.chars)]


@torch.no_grad()
def score_choices(model, tokenizer, task, rows: list[dict], max_length: int, batch_size: int,
                  device) -> ChoiceScores:
    """Option scoring of `rows` (see `ChoiceScores`): each choice's answer text (the task's answer format, then
    EOS) scored after the prompt. Options of a row that share the encoded prompt (all of them unless truncation
    differs by answer length) are scored from one encoding of it."""
    per_row = [row.get("choices") or task.choices() for row in rows]
    options = [dict(row, answer=task.answer_for(c)) for row, cs in zip(rows, per_row) for c in cs]
    encoded = encode(options, tokenizer, max_length)
    packs: list[tuple[list[int], list[list[int]]]] = []
    where: list[tuple[int, int]] = []  # per option: its pack and its place there
    at = 0
    for cs in per_row:
        mine: dict[tuple[int, ...], int] = {}
        for e in encoded[at: at + len(cs)]:
            k = mine.setdefault(tuple(e.prompt_ids), len(packs))
            if k == len(packs):
                packs.append((e.prompt_ids, []))
            where.append((k, len(packs[k][1])))
            packs[k][1].append(e.answer_ids)
        at += len(cs)
    tokens = option_token_logprobs(model, packs, tokenizer.pad_token_id, batch_size, device)
    eos = tokenizer.eos_token_id
    flat = [tokens[k][j] for k, j in where]
    out = ChoiceScores([], [], [], [], [])
    at = 0
    for cs in per_row:
        mine = flat[at: at + len(cs)]
        enc = encoded[at: at + len(cs)]
        out.choices.append(list(cs))
        out.loglik.append([sum(t[:-1]) if e.answer_ids[-1] == eos else sum(t) for t, e in zip(mine, enc)])
        out.with_eos.append([sum(t) for t in mine])
        out.chars.append([option_chars(task, c) for c in cs])
        out.encoded.append(enc)
        at += len(cs)
    return out


def best_choice(choices: list[str], scores: list[float]) -> str:
    """The choice with the highest score; the first of equals."""
    return choices[max(range(len(choices)), key=scores.__getitem__)]


@torch.no_grad()
def choose(model, tokenizer, task, rows: list[dict], max_length: int, batch_size: int, device) -> list[str]:
    """Option scoring: per row, the choice whose answer text (the task's answer format) gets the highest total
    log-probability after the prompt, as lm-evaluation-harness scores it (EOS not included). A row may narrow the
    task's choices (`choices`: e.g. RRTNM's N and M questions have fewer options than T)."""
    return score_choices(model, tokenizer, task, rows, max_length, batch_size, device).best()


MODES = ("task", "benchmark", "generate", "choices")  # the config's `evaluation.mode`


def evaluation_protocol(task, mode: str | None = "task") -> dict:
    """How the task is evaluated under the config's `evaluation.mode`: {"protocol": the mode asked for, "mode":
    generate | choices, "max_new_tokens": generation's budget, "parser": what reads a generation}. `task` is the
    task's declared mode; `benchmark` the benchmark's own protocol where the task declares one
    (`evaluation.benchmark`, e.g. JMED-LLM: generate 512 new tokens, parse the first option letter), else the
    task's declared mode, which is then its benchmark's; `generate` / `choices` force one."""
    mode = mode or "task"
    if mode not in MODES:
        raise ValueError(f"task {task.name!r}: unknown evaluation mode {mode!r}; use one of {', '.join(MODES)} "
                         f"(config key evaluation.mode)")
    declared = task.evaluation.get("benchmark") if mode == "benchmark" else None
    spec = declared or ({"mode": mode} if mode in ("generate", "choices") else task.evaluation)
    out = {"protocol": mode, "mode": spec["mode"],
           "max_new_tokens": spec.get("max_new_tokens", task.evaluation.get("max_new_tokens", 8)),
           "parser": (declared or {}).get("parser", task.parser)}
    if out["mode"] == "choices" and not task.choices():
        raise ValueError(f"task {task.name!r} declares no choices or labels: it cannot be scored by option scoring; "
                         f"use evaluation.mode generate or task")
    return out


def evaluation_mode(task, mode: str | None = "task") -> str:
    """The answer mode (generate | choices) the config's `evaluation.mode` gives this task (`evaluation_protocol`)."""
    return evaluation_protocol(task, mode)["mode"]


# Predictions besides the protocol's own (`pred`) that a record may carry, and the suffix their metrics take in a
# summary: under option scoring `pred_norm` (`accuracy_norm` is lm-evaluation-harness's `acc_norm`); under
# generation, with `options`, option scoring as a second protocol (`accuracy_options`, `accuracy_options_norm`).
EXTRA_PREDICTIONS = {"pred_norm": "_norm", "pred_options": "_options", "pred_options_norm": "_options_norm"}


def predict(model, tokenizer, task, rows: list[dict], max_length: int, batch_size: int, device,
            with_nll: bool = True, mode: str | None = None, options: bool = False) -> list[dict]:
    """Per-row records: generated (or chosen) output, parsed prediction, gold, and the gold answer's NLL (mean over
    its tokens, EOS included), under the protocol `mode` names (a value of the config's `evaluation.mode`, see
    `evaluation_protocol`; None: the task's). Under option scoring `pred` is the option of highest log-likelihood
    and `pred_norm` the one of highest log-likelihood per character (lm-eval's acc and acc_norm; see
    `ChoiceScores`). Under generation, `options` adds option scoring as a second protocol for a task with choices
    (`pred_options`, `pred_options_norm`). The gold answer's NLL comes from the forward that scored the options, when
    the gold answer text is one of them; other rows take one teacher-forced forward of the gold answer."""
    model.eval()
    protocol = evaluation_protocol(task, mode)
    encoded = encode(rows, tokenizer, max_length)
    nll_: list[float | None] = [None] * len(rows)
    extra: dict[str, list] = {}
    scored = None
    if protocol["mode"] == "generate":
        raw = generate(model, tokenizer, encoded, protocol["max_new_tokens"], batch_size, device)
        preds = [task.parse(t, protocol["parser"]) for t in raw]
        if options and task.choices():
            scored = score_choices(model, tokenizer, task, rows, max_length, batch_size, device)
            extra["pred_options"], extra["pred_options_norm"] = scored.best(), scored.best_norm()
    else:
        scored = score_choices(model, tokenizer, task, rows, max_length, batch_size, device)
        raw = scored.best()
        preds = raw  # already a declared choice: nothing to parse
        extra["pred_norm"] = scored.best_norm()
    if scored is not None:
        for i, (e, sc, opts) in enumerate(zip(encoded, scored.with_eos, scored.encoded)):
            same = [s for s, o in zip(sc, opts) if o.answer_ids == e.answer_ids and o.prompt_ids == e.prompt_ids]
            if same:
                nll_[i] = -same[0] / len(e.answer_ids)
    golds = [task.gold(r) for r in rows]
    if with_nll:
        missing = [i for i, n in enumerate(nll_) if n is None]
        for i, n in zip(missing, gold_nll(model, [encoded[i] for i in missing], tokenizer.pad_token_id, batch_size,
                                          device)):
            nll_[i] = n
    else:
        nll_ = [None] * len(rows)
    counts = item_statistics(task, preds, rows)
    return [{"id": r["id"], "subdomain": r.get("subdomain"), "output": t, "pred": p, "gold": g,
             "correct": p == g, "gold_nll": n} | {k: v[i] for k, v in extra.items()} | c
            for i, (r, t, p, g, n, c) in enumerate(zip(rows, raw, preds, golds, nll_, counts))]


def item_statistics(task, preds: list, rows: list[dict]) -> list[dict]:
    """Per row, what the task's corpus-level metrics need of it beyond its prediction and gold answer, for the
    leaderboard's bootstrap to recompute them on resampled rows: with a seqeval metric, `entities`, the row's entity
    counts (tasks.metrics.entity_counts: gold, predicted, correct, absent), which need the row's tokens and tags
    (the records do not keep them). Empty for other tasks."""
    specs = [m for m in task.metric_specs if m["name"] in ENTITY_COUNT_METRICS]
    if not specs:
        return [{} for _ in rows]
    entity_type = specs[0]["params"].get("entity_type", "Disease")  # one type per task (the metrics' check)
    return [{"entities": entity_counts(p, r, entity_type)} for p, r in zip(preds, rows)]


def summarize(task, records: list[dict], rows: list[dict]) -> dict:
    """Every task metric overall and per subdomain (where rows carry one), with counts; `score` is the headline
    metric's value. Records that carry further predictions (`EXTRA_PREDICTIONS`, e.g. option scoring's
    length-normalised `pred_norm`) add every task metric on those too, its key suffixed (`accuracy_norm`);
    `sources` says which predictions each metric key scores."""
    specs = task.metric_specs
    fields = {"pred": ""} | {f: suffix for f, suffix in EXTRA_PREDICTIONS.items()
                             if records and all(f in r for r in records)}

    def scores(idx: list[int]) -> dict[str, float]:
        golds, examples = [records[i]["gold"] for i in idx], [rows[i] for i in idx]
        out = {}
        for f, suffix in fields.items():
            got = task.scores([records[i][f] for i in idx], golds, examples)
            out |= {f"{k}{suffix}": v for k, v in got.items()}
        return out

    overall = scores(list(range(len(records))))
    summary = {"metric": task.metric, "score": overall[task.metric], "scores": overall,
               "directions": {f"{m['key']}{suffix}": m["direction"] for suffix in fields.values() for m in specs},
               "sources": {f"{m['key']}{suffix}": f for f, suffix in fields.items() for m in specs},
               "n": len(records), "subdomains": {}}
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
    """The epoch-end validation score of training: the task's headline metric on the validation split, under the
    protocol the test evaluation reports (`evaluation.mode`)."""
    rows = prep.rows("validation")
    evaluation_protocol(prep.task, mode)  # an impossible mode fails before training, not after its first epoch

    def validate(model) -> float:
        with autocast(precision, device):
            recs = predict(model, prep.tokenizer, prep.task, rows, prep.task.max_length, batch_size, device,
                           with_nll=False, mode=mode)
        return prep.task.score([r["pred"] for r in recs], [r["gold"] for r in recs], rows)

    return validate
