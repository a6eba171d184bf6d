"""The loss conventions of baselines/CONVENTIONS.md that are not a single divergence's value: normalisation under
gradient accumulation, vocabulary padding, the CE mix. (Golden values and per-divergence properties:
tests/test_divergences.py; label shift: tests/test_training.py; temperature and tau^2: tests/test_losses.py.)"""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from scd.data import IGNORE, Encoded
from scd.distill.methods import method_from_config
from scd.settings import Optimization
from scd.train import train


def tiny_lm(seed, vocab=11):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=32, max_position_embeddings=32))


def rows(n=7):
    g = torch.Generator().manual_seed(0)
    # responses of different lengths, so per-micro-batch means and the global token mean differ
    return [Encoded(torch.randint(3, 11, (3 + i % 3,), generator=g).tolist(),
                    torch.randint(3, 11, (1 + (i * 5) % 4,), generator=g).tolist() + [2]) for i in range(n)]


@pytest.mark.parametrize("divergence", ["fkl", "jsd", "taid"])
def test_gradient_accumulation_equals_the_full_batch(divergence):
    """micro_batch_size < batch_size: each micro-batch is normalised by the step's valid-token count, so one step
    gives the same parameters as the full batch (a per-micro-batch mean would weigh short batches up)."""
    teacher = tiny_lm(1).eval()
    data = rows()

    def trained(micro):
        model = tiny_lm(0)
        method = method_from_config("m", {"divergence": divergence, "alpha": 0.5})

        def loss_fn(model, batch, n_tokens):
            with torch.no_grad():
                t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            s = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            return method.loss(s, t, batch["labels"], torch.full((len(s),), 0.5), batch["labelled"], n_tokens)

        phase = Optimization(epochs=1, batch_size=7, micro_batch_size=micro, lr=1e-2)
        train(model, data, phase, pad_id=0, seed=0, loss_fn=loss_fn, validate=lambda m: 0.0,
              log=lambda m, s: None)
        return model.state_dict()

    full, accumulated = trained(7), trained(3)
    assert all(torch.allclose(full[k], accumulated[k], atol=1e-6) for k in full)
    start = tiny_lm(0).state_dict()
    assert any(not torch.allclose(full[k], start[k]) for k in full)  # the step did move the weights


def test_padded_vocabulary_rows_are_cut_before_the_loss_and_mismatches_fail_clearly():
    """Models of one family may pad their embedding matrices differently: losses compare only the real shared
    vocabulary (the logits are cut to len(tokenizer) before the loss); comparing two different vocabularies with a
    same-vocabulary divergence is an error that says so."""
    method = method_from_config("td", {"divergence": "fkl", "alpha": 1.0})
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 11), torch.randn(2, 3, 11)
    labels = torch.tensor([[1, 2, IGNORE], [4, IGNORE, IGNORE]])
    w = torch.ones(2)
    padded_s = torch.cat([s, torch.randn(2, 3, 5) + 9], -1)  # padding rows with large garbage logits
    padded_t = torch.cat([t, torch.randn(2, 3, 21) - 3], -1)
    real, _ = method.loss(s, t, labels, w)
    cut, _ = method.loss(padded_s[..., :11], padded_t[..., :11], labels, w)
    assert torch.equal(real, cut)
    with pytest.raises(ValueError, match="shared real vocabulary"):
        method.loss(padded_s, padded_t, labels, w)


def test_ce_mix_weight_is_the_divergence_share():
    """alpha (or the AW weight) multiplies the divergence, 1 - alpha the gold CE: alpha 1 = pure KD, 0 = pure CE
    (DistiLLM / DSKD's kd_rate convention; some repositories invert it)."""
    torch.manual_seed(1)
    s, t = torch.randn(1, 2, 5), torch.randn(1, 2, 5)
    labels = torch.tensor([[3, 1]])
    pure_kd, stats = method_from_config("a", {"divergence": "rkl", "alpha": 1.0}).loss(s, t, labels, torch.ones(1))
    assert float(pure_kd) == pytest.approx(stats["divergence"])
    pure_ce, stats = method_from_config("a", {"divergence": "rkl", "alpha": 0.0}).loss(s, t, labels, torch.zeros(1))
    assert float(pure_ce) == pytest.approx(stats["ce"])
