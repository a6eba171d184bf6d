"""Evaluation without repeated work gives the numbers of the plain way: option scoring from one encoding of the
prompt against one forward per option, the gold NLL taken from option scoring against its own forward, our
sampling loop against transformers' `generate`, length-grouped batches against row order."""
import json
import random
import types

import pytest
import torch
from conftest import prepare_tiny_jmed
from transformers import LlamaConfig, LlamaForCausalLM

from scd.config import stage_config
from scd.data import Encoded, collate, encode
from scd.evaluate import by_length, generate_ids, gold_nll, option_scores, predict, score_choices
from scd.models import build_model, forward_responses
from scd.prepared import Prepared
from scd.stages.evaluate import reuse_evaluation
from scd.tokens import token_ce

TOL = 1e-5


def tiny_llama(attn: str, vocab: int = 300) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=128, max_position_embeddings=256, pad_token_id=0,
                      eos_token_id=1)
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg).eval()


def one_forward_per_option(model, prompt: list[int], answers: list[list[int]], pad: int) -> list[float]:
    """The plain way: prompt + answer as one row per option, the answer's summed log-probability."""
    out, labels = forward_responses(model, collate([Encoded(prompt, a) for a in answers], pad))
    return (-token_ce(out.logits, labels).sum(-1)).tolist()


def hf_generate(model, prompts, pad, eos, n, **sampling) -> list[list[int]]:
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=n, pad_token_id=pad, eos_token_id=eos,
                         **({"do_sample": False} | sampling))
    return [row[: row.index(eos) + 1] if eos in row else row for row in out[:, width:].tolist()]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_option_scores_match_one_forward_per_option(attn):
    model, rng = tiny_llama(attn), random.Random(0)
    packs = [([rng.randrange(2, 300) for _ in range(rng.randrange(1, 40))],
              [[rng.randrange(2, 300) for _ in range(rng.randrange(0, 5))] + [1] for _ in range(rng.randrange(1, 8))])
             for _ in range(11)]
    packed = option_scores(model, packs, 0, 4, "cpu")
    for (prompt, answers), got in zip(packs, packed):
        want = one_forward_per_option(model, prompt, answers, 0)
        assert len(got) == len(want) and max(abs(a - b) for a, b in zip(got, want)) < TOL, (got, want)


@pytest.mark.parametrize("sampling", [{}, {"do_sample": True}, {"do_sample": True, "temperature": 0.5}])
def test_generation_loop_gives_the_tokens_of_transformers_generate(sampling):
    model, rng = tiny_llama("sdpa", vocab=40), random.Random(1)
    with torch.no_grad():  # sharper distributions than a fresh init's, so that the temperature matters
        model.lm_head.weight.mul_(30)
    prompts = [[rng.randrange(2, 40) for _ in range(rng.randrange(1, 20))] for _ in range(9)]
    extra = {"top_k": 0, "top_p": 1.0} if sampling else {}
    eos = generate_ids(model, prompts, 0, -1, 10, "cpu")[0][2]  # a token greedy decoding says: some rows stop early
    torch.manual_seed(3)
    want = hf_generate(model, prompts, 0, eos, 10, **sampling, **extra)
    torch.manual_seed(3)
    got = generate_ids(model, prompts, 0, eos, 10, "cpu", **sampling)
    assert got == want
    assert any(len(r) < 10 and r[-1] == eos for r in got) and any(len(r) == 10 for r in got)  # EOS kept; the cap


def test_length_batches_cover_every_row_once_longest_first():
    lengths = [3, 9, 1, 9, 4, 7, 2]
    batches = by_length(lengths, 3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True) and [len(b) for b in batches] == [3, 3, 1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("evaluate")
    return root, prepare_tiny_jmed(root, shared_data, max_test=20)


def zero_shot(cfg, task: str, prep: Prepared):
    job = stage_config(cfg, task, "zero_shot", "student")
    return build_model(job.model, prep.tokenizer, prep.task.positions, 0).eval()


def test_choice_predictions_and_gold_nll_match_the_plain_way(prepared):
    root, cfg = prepared
    prep = Prepared.open(root / "rrtnm")
    model, rows, tok, task = zero_shot(cfg, "rrtnm", prep), prep.rows("test"), prep.tokenizer, prep.task
    records = predict(model, tok, task, rows, task.max_length, 4, "cpu")
    for row, rec in zip(rows, records):
        cs = row.get("choices") or task.choices()
        enc = encode([dict(row, answer=task.answer_for(c)) for c in cs], tok, task.max_length)
        # the option's own tokens, not the EOS the suite appends (lm-eval's loglikelihood of the continuation)
        plain = one_forward_per_option(model, enc[0].prompt_ids, [e.answer_ids[:-1] for e in enc], tok.pad_token_id)
        assert rec["pred"] == cs[max(range(len(cs)), key=plain.__getitem__)]
    # the gold NLL from option scoring is the one a forward of the gold answer gives
    want = gold_nll(model, encode(rows, tok, task.max_length), tok.pad_token_id, 1, "cpu")
    assert max(abs(r["gold_nll"] - w) for r, w in zip(records, want)) < TOL
    # batches grouped by length: the same records in row order whatever the batch size
    again = predict(model, tok, task, rows, task.max_length, 7, "cpu")
    assert [r["id"] for r in again] == [r["id"] for r in rows]
    assert [r["pred"] for r in again] == [r["pred"] for r in records]


def test_options_whose_prompts_truncate_differently_are_scored_after_their_own_prompt(prepared):
    root, cfg = prepared
    prep = Prepared.open(root / "rrtnm")
    model, tok = zero_shot(cfg, "rrtnm", prep), prep.tokenizer
    rows = [{k: v for k, v in r.items() if k != "choices"} for r in prep.rows("test")[:3]]
    task = types.SimpleNamespace(choices=lambda: ["A", "B C D E F G H"], answer_for=lambda c: c)
    scored = score_choices(model, tok, task, rows, 24, 2, "cpu")
    assert any(o[0].prompt_ids != o[1].prompt_ids for o in scored.encoded)  # the longer answer left less room
    for got, opts in zip(scored.with_eos, scored.encoded):
        want = [one_forward_per_option(model, o.prompt_ids, [o.answer_ids], tok.pad_token_id)[0] for o in opts]
        assert max(abs(a - b) for a, b in zip(got, want)) < TOL


def lm_eval_option_scores(model, tok, row: dict, options: list[str], max_length: int) -> list[float]:
    """Independently of the packed scoring: an option's log-likelihood as lm-evaluation-harness takes it, one plain
    forward of prompt + option per option, summed over the option's own tokens (no end-of-sequence token)."""
    out = []
    for text in options:
        e = encode([dict(row, answer=text)], tok, max_length)[0]
        assert e.answer_ids[-1] == tok.eos_token_id  # the suite's encoding appends EOS: leave it out
        out.append(one_forward_per_option(model, e.prompt_ids, [e.answer_ids[:-1]], tok.pad_token_id)[0])
    return out


def test_option_scoring_leaves_out_eos_and_normalises_by_characters_as_lm_eval(prepared):
    root, cfg = prepared
    prep = Prepared.open(root / "rrtnm")
    model, tok = zero_shot(cfg, "rrtnm", prep), prep.tokenizer
    rows = [{k: v for k, v in r.items() if k != "choices"} for r in prep.rows("test")[:12]]
    choices = ["はい", "いいえ", "わからない", "どちらとも言えない場合がある"]
    task = types.SimpleNamespace(choices=lambda: choices, answer_for=lambda c: f" {c}")
    scored = score_choices(model, tok, task, rows, prep.task.max_length, 5, "cpu")
    plain, norm = [], []
    for row, got, got_eos in zip(rows, scored.loglik, scored.with_eos):
        want = lm_eval_option_scores(model, tok, row, [f" {c}" for c in choices], prep.task.max_length)
        assert max(abs(a - b) for a, b in zip(got, want)) < TOL
        assert all(e < g for e, g in zip(got_eos, got))  # the EOS token's log-probability is not in the score
        # lm-eval: pred = argmax(lls), pred_norm = argmax(lls / len(choice)), the delimiter " " not counted
        plain.append(choices[max(range(4), key=want.__getitem__)])
        norm.append(choices[max(range(4), key=lambda j: want[j] / len(choices[j]))])
    assert scored.best() == plain and scored.best_norm() == norm
    assert plain != norm  # the fixture tells the two apart


def test_generation_predictions_match_transformers_generate(prepared):
    root, cfg = prepared
    prep = Prepared.open(root / "nrner")
    model, rows, tok, task = zero_shot(cfg, "nrner", prep), prep.rows("test"), prep.tokenizer, prep.task
    records = predict(model, tok, task, rows, task.max_length, 4, "cpu")
    enc = encode(rows, tok, task.max_length)
    n = task.evaluation.get("max_new_tokens", 8)
    for e, rec in zip(enc, records):
        ids = hf_generate(model, [e.prompt_ids], tok.pad_token_id, tok.eos_token_id, n)[0]
        text = tok.decode(ids[:-1] if ids and ids[-1] == tok.eos_token_id else ids, skip_special_tokens=True)
        assert rec["output"] == text
    want = gold_nll(model, enc, tok.pad_token_id, 1, "cpu")
    assert max(abs(r["gold_nll"] - w) for r, w in zip(records, want)) < TOL


def test_a_shared_teachers_evaluation_is_reused_with_the_other_seed(tmp_path):
    src = tmp_path / "seed0" / "teacher_sft.json"
    src.parent.mkdir()
    src.write_text(json.dumps({"task": "t", "model": "teacher_sft", "seed": 0, "run_id": "abc",
                               "scores": {"acc": 0.5}}))
    src.with_suffix(".samples.jsonl").write_text('{"pred": "a", "gold": "a"}\n{"pred": "b", "gold": "a"}\n')
    out = tmp_path / "seed2" / "teacher_sft.json"
    out.parent.mkdir()
    reuse_evaluation(src, 2, out)
    got = json.loads(out.read_text())
    assert got == {"task": "t", "model": "teacher_sft", "seed": 2, "reused_from_seed": 0, "run_id": "abc",
                   "scores": {"acc": 0.5}}
    assert out.with_suffix(".samples.jsonl").read_text() == src.with_suffix(".samples.jsonl").read_text()
