"""Tokenizer, models, the training loop and evaluation on a tiny synthetic task, without the workflow."""
import json
from pathlib import Path

import pytest
import torch

from scd.config import load_config, stage_config
from scd.data import IGNORE, collate, encode
from scd.evaluate import predict
from scd.models import build_model, load_pretrained
from scd.settings import Optimization
from scd.stages.prepare import prepare
from scd.stages.sft import sft
from scd.tokenizer import train_tokenizer
from scd.train import checkpoint_schedule, lr_lambda
from tasks import get_task

TINY = {"n_tfs_train": 200, "n_tfs_test": 50, "n_sfs_train": 50, "n_sfs_test": 50, "n_val": 40}


def test_tokenizers_are_deterministic(shared_data):
    rows = get_task("pubmedqa").load(shared_data)["train"][:100]
    texts = [r["prompt"] + r["answer"] for r in rows]
    a, b = train_tokenizer("bpe", texts, 500), train_tokenizer("bpe", list(reversed(texts)), 500)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    c = train_tokenizer("char", ["m123x4=2940", "p12345678?e"])
    assert c.decode(c("m123x4=").input_ids) == "m123x4="


def test_collate_preshifts_labels_onto_response_tokens():
    tok = train_tokenizer("char", ["ab=cd"])
    enc = encode([{"id": "0", "prompt": "ab=", "answer": "cd"}], tok, 16)
    batch = collate(enc, tok.pad_token_id)
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    # positions 0..1 predict prompt tokens (ignored); position 2 ('=') predicts 'c', 3 predicts 'd', 4 predicts EOS
    assert labels[:2] == [IGNORE, IGNORE]
    assert labels[2:5] == ids[3:5] + [tok.eos_token_id]
    assert labels[5:] == [IGNORE] * (len(labels) - 5)


def test_long_prompts_lose_their_start():
    tok = train_tokenizer("char", ["abcdefgh=xy"])
    enc = encode([{"id": "0", "prompt": "abcdefgh=", "answer": "xy"}], tok, 6)
    assert tok.decode(enc[0].prompt_ids) == "gh="  # 6 - (2 answer + EOS) = 3 prompt tokens kept


def test_checkpoints_are_evenly_spaced():
    assert checkpoint_schedule(100, 4) == {25: "ckpt-1", 50: "ckpt-2", 75: "ckpt-3", 100: "ckpt-4"}
    with pytest.raises(ValueError, match="only 3 steps"):
        checkpoint_schedule(3, 4)


def test_lr_schedule_warms_up_then_decays_to_zero():
    f = lr_lambda(100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.0, abs=1e-9)
    assert all(f(i) >= f(i + 1) for i in range(10, 100))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    cfg = load_config("smoke", {"results_dir": str(root), "training": {"teacher": {"save_checkpoints": 3}},
                                "task_overrides": {"synthetic_subdomains": {
        "task_options": TINY, "training": {"teacher": {"epochs": 3, "batch_size": 32}}}}})
    prepare(stage_config(cfg, "synthetic_subdomains", "prepare"), root / "data")
    return cfg, root


def test_teacher_sft_saves_checkpoints_and_best(tiny_run):
    cfg, root = tiny_run
    summary = sft(stage_config(cfg, "synthetic_subdomains", "sft", "teacher"), 0, root / "data",
                  root / "teacher")
    assert sorted(p.name for p in (root / "teacher" / "checkpoints").iterdir()) == ["ckpt-1", "ckpt-2", "ckpt-3"]
    # 200 TFS + 2 x 50 SFS rows, batch 32 -> 10 steps per epoch, 3 epochs -> 30 steps, thirds at 10, 20, 30
    assert summary["steps"] == 30
    assert summary["checkpoints"] == {"ckpt-1": 10, "ckpt-2": 20, "ckpt-3": 30}
    assert (root / "teacher" / "best" / "model.safetensors").exists()
    assert json.loads((root / "teacher" / "summary.json").read_text())["best_val_score"] == summary["best_val_score"]
    assert not (root / "teacher.partial").exists()


def test_same_seed_same_model(tiny_run):
    cfg, root = tiny_run
    scfg = stage_config(cfg, "synthetic_subdomains", "sft", "student")
    a = sft(scfg, 3, root / "data", root / "s_a")
    b = sft(scfg, 3, root / "data", root / "s_b")
    sft(scfg, 4, root / "data", root / "s_c")
    wa, wb, wc = (load_pretrained(root / d / "best").state_dict() for d in ("s_a", "s_b", "s_c"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a["best_val_score"] == b["best_val_score"]


def test_training_learns_the_synthetic_rule(tmp_path):
    """A student trained briefly on SFS-only data gets parity far above chance: the loop really trains."""
    task = get_task("synthetic_subdomains")
    opts = {**TINY, "n_tfs_train": 0, "n_tfs_test": 1, "n_val": 2, "n_sfs_train": 400, "sfs_noise": 0.0,
            "n_sfs_test": 200}
    splits = task.load(Path("."), opts)
    tok = train_tokenizer("char", [r["prompt"] + r["answer"] for r in splits["train"]])
    from scd.stages.sft import ce_loss
    from scd.train import train

    model = build_model({"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                         "intermediate_size": 64}, tok, 16, seed=0)
    test = [r for r in splits["test"] if r["subdomain"] == "sfs"]

    def accuracy(m):
        recs = predict(m, tok, task, test, 16, 256, torch.device("cpu"), with_nll=False)
        return sum(r["correct"] for r in recs) / len(recs)

    before = accuracy(model)
    phase = Optimization(epochs=8, lr=3e-3, batch_size=32, warmup_ratio=0.05, grad_clip=1.0)
    train(model, encode(splits["train"], tok, 16), phase, pad_id=tok.pad_token_id, seed=0, loss_fn=ce_loss,
          validate=accuracy, log=lambda m, s: None)
    assert before < 0.6 and accuracy(model) > 0.9


def test_pretrained_directory_loads_through_the_same_path(tmp_path):
    """A local model directory is a config change: build_model with `pretrained` gives back the saved weights."""
    tok = train_tokenizer("char", ["m123x4=2940"])
    spec = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    model = build_model(spec, tok, 16, seed=7)
    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    again = build_model({"pretrained": str(tmp_path / "m")}, tok, 16, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="either `pretrained`, `derive_from` or the sizes"):
        build_model({"hidden_size": 16}, tok, 16, seed=0)


def test_a_step_offset_shifts_the_logged_steps_and_nothing_else():
    """A staged run's later stages pass `step_offset`: log and after_step see steps continuing the run's count;
    the LR schedule, the logging cadence, the weights and the summary are those of the call's own steps."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from scd.data import Encoded
    from scd.stages.sft import ce_loss
    from scd.train import train

    g = torch.Generator().manual_seed(0)
    data = [Encoded(torch.randint(3, 11, (4,), generator=g).tolist(),
                    torch.randint(3, 11, (2,), generator=g).tolist() + [2]) for _ in range(12)]

    def run(offset):
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=11, hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32, max_position_embeddings=32))
        logged, after = [], []
        summary = train(model, data, Optimization(epochs=2, batch_size=4, lr=1e-2, warmup_ratio=0.2), pad_id=0,
                        seed=0, loss_fn=ce_loss, validate=lambda m: 0.5, log=lambda m, s: logged.append((m, s)),
                        log_every=2, after_step=lambda loss, s: after.append((loss, s)), step_offset=offset)
        timing = ("train/seconds", "train/tokens_per_second")
        logged = [({k: v for k, v in m.items() if k not in timing}, s) for m, s in logged]
        return model.state_dict(), logged, after, {k: v for k, v in summary.items() if "second" not in k}

    w0, log0, after0, s0 = run(0)
    w7, log7, after7, s7 = run(7)
    assert all(torch.equal(w0[k], w7[k]) for k in w0)
    assert [m for m, _ in log0] == [m for m, _ in log7] and [s + 7 for _, s in log0] == [s for _, s in log7]
    assert [s for _, s in after0] == list(range(1, 7)) and [s for _, s in after7] == list(range(8, 14))
    assert [v for v, _ in after0] == [v for v, _ in after7]
    assert s0 == s7 and s0["best_step"] == 3 and s0["steps"] == 6
