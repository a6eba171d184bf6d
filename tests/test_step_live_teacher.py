"""The distillation step computes the student's and the live teacher's logits only where a loss reads them (the
response columns, each row up to its last response label, rows of similar length together): on a fixed batch,
every method's loss and gradient equal those of full forward passes over the padded batch (the previous code's
way: the student's head at the response columns, the teacher's everywhere, cut to those columns)."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import scd.distill.step
from scd.data import Encoded, collate
from scd.distill.methods import method_from_config
from scd.distill.step import DistillStep
from scd.distill.teacher import LiveTeacher, TeacherCache
from scd.models import length_groups
from scd.tokens import response_mask

VOCAB = 50  # real vocabulary; the models' embeddings have 3 padding rows past it
SPECS = {
    "fkl-mix": {"divergence": "fkl", "alpha": 0.5},
    "fkl-aw": {"divergence": "fkl", "weighting": "aw"},
    "rkl-t2": {"divergence": "rkl", "temperature": 2.0, "tau_squared": True},
    "jsd": {"divergence": "jsd"},
    "tvd": {"divergence": "tvd"},
    "skew_kl": {"divergence": "skew_kl"},
    "akl": {"divergence": "akl"},
    "taid": {"divergence": "taid"},
}


class LiveGold:
    live_teacher = True

    def batch(self, batch, model, live):
        return batch, True


def llama(seed: int, hidden: int, layers: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB + 3, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * hidden, max_position_embeddings=128, pad_token_id=0,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a peaked, non-uniform teacher: random init gives near-uniform logits
        model.lm_head.weight.mul_(40.0)
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    llama(0, 32, 2).save_pretrained(root / "teacher" / "best")
    gen = torch.Generator().manual_seed(1)
    rows = []
    for prompt, answer in [(3, 2), (5, 3), (4, 1), (9, 4), (50, 2), (58, 3), (61, 2)]:
        ids = torch.randint(1, VOCAB, (prompt + answer,), generator=gen).tolist()
        rows.append(Encoded(ids[:prompt], ids[prompt:], labelled=answer != 1))
    batch = collate(rows, 0)
    batch["index"] = torch.arange(len(rows))
    return root, batch


def old_student_logits(model, batch, keep, vocab=None):
    """The previous code's student forward: the whole padded batch, the output head at the kept columns."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
    return logits[..., :vocab]


def losses(root, batch, spec: dict, reference: bool, monkeypatch):
    torch.manual_seed(2)
    student = llama(3, 16, 1)
    live = LiveTeacher(root / "teacher", None, VOCAB, torch.device("cpu"))
    method = method_from_config("m", spec)
    method.responses = LiveGold()
    if spec.get("weighting") == "aw":
        method.weighting._w = torch.linspace(0.1, 0.9, batch["input_ids"].shape[0])
    step = DistillStep(method, TeacherCache.in_memory(live, [], []), live, VOCAB)
    step.checkpoint = "best"
    if reference:  # the student on the whole batch; the teacher's full forward pass cut to the kept columns
        monkeypatch.setattr(scd.distill.step, "logits_at", old_student_logits)
        live.logits_at = lambda name, full, keep: live.forward(name, full)[0][:, keep]
    loss, stats = step(student, batch, int(response_mask(batch["labels"]).sum()))
    loss.backward()
    return loss.item(), stats, torch.cat([p.grad.flatten() for p in student.parameters()])


def test_the_batch_splits_into_length_groups(setup):
    _, batch = setup
    mask = response_mask(batch["labels"])
    ends = torch.where(mask, torch.arange(mask.shape[1]) + 1, 0).amax(1).tolist()
    assert len(length_groups(ends)) > 1  # else the grouped path below is not exercised


@pytest.mark.parametrize("name", sorted(SPECS))
def test_losses_equal_those_of_full_forward_passes(setup, name, monkeypatch):
    root, batch = setup
    new, new_stats, new_grad = losses(root, batch, SPECS[name], False, monkeypatch)
    old, old_stats, old_grad = losses(root, batch, SPECS[name], True, monkeypatch)
    assert new > 1e-3
    assert new == pytest.approx(old, rel=1e-6, abs=1e-7)
    assert new_stats == pytest.approx(old_stats, rel=1e-6, abs=1e-7)
    torch.testing.assert_close(new_grad, old_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("lengths, groups", [([], []), ([7], [[0]]), ([5, 5, 5], [[0, 1, 2]]),
                                             ([100, 3, 4, 101, 2], [[4, 1, 2], [0, 3]])])
def test_length_groups_split_only_where_it_saves_compute(lengths, groups):
    assert length_groups(lengths, overhead=64) == groups
