"""The training switches of a model spec, on tiny models: LoRA adapters (each saved checkpoint an adapter that
load_trained rebuilds exactly, through SFT, teacher outputs and distillation), gradient checkpointing (the same
gradients), and the config's max_length replacing a task's own."""
import copy
import json

import pytest
import torch
from conftest import require

from scd.config import stage_config
from scd.data import collate
from scd.distill.teacher import saved_checkpoints
from scd.evaluate import validator
from scd.models import ADAPTER_BASE, add_lora, build_model, count_parameters, load_trained
from scd.prepared import Prepared
from scd.stages.distill import distill, initial_student
from scd.stages.prepare import prepare
from scd.stages.sft import ce_loss, sft

TASK = "synthetic_subdomains"


def with_lora(cfg: dict, *roles: str, r: int = 4) -> dict:
    cfg = copy.deepcopy(cfg)
    for role in roles:
        cfg["models"][role]["lora"] = {"r": r, "alpha": 8, "dropout": 0.0}
    return cfg


@pytest.fixture(autouse=True)
def _require_peft():
    require("peft", install='pip install -e ".[lora]"')


@pytest.fixture(scope="module")
def lora_runs(tiny_distill, tmp_path_factory):
    """A LoRA teacher with 3 checkpoints and a LoRA student, SFT'd on the tiny task; their summaries."""
    root, config = tiny_distill
    out = tmp_path_factory.mktemp("lora")
    cfg = with_lora(config(3, 1), "teacher", "student")
    summaries = {role: sft(stage_config(cfg, TASK, "sft", role), 0, root / "data", out / role)
                 for role in ("teacher", "student")}
    return root, out, cfg, summaries


def test_lora_checkpoints_are_adapters_a_fraction_of_the_model(lora_runs):
    root, out, _, summaries = lora_runs
    full = sum(f.stat().st_size for f in (root / "teacher3" / "checkpoints" / "ckpt-1").glob("*.safetensors"))
    for name in ("ckpt-1", "ckpt-2", "ckpt-3"):
        ckpt = out / "teacher" / "checkpoints" / name
        assert (ckpt / "adapter_model.safetensors").is_file() and (ckpt / ADAPTER_BASE).is_file()
        assert not (ckpt / "model.safetensors").exists()
        assert (ckpt / "adapter_model.safetensors").stat().st_size < full / 5
    full_summary = json.loads((root / "teacher3" / "summary.json").read_text())
    assert summaries["teacher"]["checkpoints"] == full_summary["checkpoints"]  # the same trajectory steps


def test_load_trained_rebuilds_the_validated_model(lora_runs):
    """The adapter on its rebuilt base scores exactly what training validated, merged or still an adapter."""
    root, out, cfg, summaries = lora_runs
    prep = Prepared.open(root / "data")
    job = stage_config(cfg, TASK, "evaluate")
    validate = validator(prep, job.evaluation.batch_size, job.evaluation.mode, job.precision, torch.device("cpu"))
    merged = load_trained(out / "teacher" / "best")
    assert not hasattr(merged, "peft_config")  # merged into plain weights for inference
    assert validate(merged) == summaries["teacher"]["best_val_score"]
    trainable = load_trained(out / "teacher" / "best", trainable=True)
    names = [n for n, p in trainable.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    batch = collate(prep.encoded("validation")[:4], prep.tokenizer.pad_token_id)
    with torch.no_grad():
        a = merged(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = trainable(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        base = build_model(cfg["models"]["teacher"] | {"lora": None}, prep.tokenizer, prep.task.positions, 0)
        c = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-3)  # the adapter trained: it is not the base


def test_distillation_from_a_lora_teacher_into_a_lora_student(lora_runs, tiny_distill):
    """Teacher outputs from adapter checkpoints, SCD's choice among them, AW's frozen LoRA student-SFT model, and
    a distilled student saved as an adapter that moved away from its start."""
    root, out, _, _ = lora_runs
    methods = {"scd+aw": {"schedule": "scd", "divergence": "fkl", "weighting": "aw"}}
    cfg = with_lora(tiny_distill[1](3, 2, methods), "teacher", "student")
    summary = distill(stage_config(cfg, TASK, "distill", "scd+aw"), 0, root / "data", out / "teacher",
                      out / "student", out / "scd+aw")
    # the LoRA teacher's trajectory (its last checkpoint stood in for by `best`), and SCD's choices from it
    assert summary["checkpoints"] == saved_checkpoints(out / "teacher") == ["ckpt-1", "ckpt-2", "best"]
    assert len(summary["schedule"]) == 2 and set(summary["schedule"]) <= set(summary["checkpoints"])
    assert summary["schedule"] == [min(s, key=lambda c: s[c]["score"]) for s in summary["schedule_scores"]]
    assert (out / "scd+aw" / "best" / "adapter_model.safetensors").is_file()
    after, before = load_trained(out / "scd+aw" / "best"), load_trained(out / "student" / "best")
    assert max(float((a - b).abs().max()) for a, b in zip(after.state_dict().values(),
                                                           before.state_dict().values())) > 0


def test_lora_options_are_checked():
    model = build_model({"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                         "intermediate_size": 32}, _Tok(), 16, 0)
    with pytest.raises(ValueError, match="unknown option.*'rank'.*known: r, alpha"):
        add_lora(model, {"rank": 4})
    lora = add_lora(model, {"r": 2})
    assert 0 < count_parameters(lora, trainable=True) < count_parameters(lora) / 5


def test_gradient_checkpointing_gives_the_same_gradients(tiny_distill):
    root, config = tiny_distill
    prep = Prepared.open(root / "data")
    spec = config(1, 1)["models"]["teacher"]
    batch = collate(prep.encoded("train")[:8], prep.tokenizer.pad_token_id)
    grads = []
    for gc in (False, True):
        model = build_model(spec | {"gradient_checkpointing": gc}, prep.tokenizer, prep.task.positions, 0).train()
        assert model.is_activation_checkpointing == gc
        assert model.config.use_cache  # generation after training keeps its KV cache
        loss, _ = ce_loss(model, batch)
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_distillation_trains_the_student_sft_model_with_gradient_checkpointing(tiny_distill):
    """The switch is the config's, not the saved model's: the distill job gets the student's spec and applies it."""
    root, config = tiny_distill
    cfg = config(1, 1)
    cfg["models"]["student"]["gradient_checkpointing"] = True
    job = stage_config(cfg, TASK, "distill", "td")
    assert job.student["gradient_checkpointing"] is True
    prep = Prepared.open(root / "data")
    for job, gc in ((job, True), (stage_config(config(1, 1), TASK, "distill", "td"), False)):
        assert bool((job.student or {}).get("gradient_checkpointing")) == gc
        student = initial_student(prep, root / "student", 0, job.training.init, job.student, gc)
        assert student.is_activation_checkpointing == gc


def test_config_max_length_replaces_the_tasks_own(tiny_distill, tmp_path):
    root, config = tiny_distill
    declared = Prepared.open(root / "data").task.max_length
    cfg = config(1, 1) | {"max_length": declared + 8}
    prepare(stage_config(cfg, TASK, "prepare"), tmp_path / "data")
    prep = Prepared.open(tmp_path / "data")
    assert prep.manifest["max_length"] == prep.task.max_length == declared + 8
    assert prep.task.positions == declared + 8 + prep.task.evaluation.get("max_new_tokens", 0)


class _Tok:
    """Just what build_model reads from a tokenizer."""
    pad_token_id, eos_token_id = 0, 1

    def __len__(self):
        return 10
