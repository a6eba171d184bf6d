"""The baselines as their authors ran them: TAID's adaptive update reads the reference's loss value, the reference
presets beside the suite's common ones (from the registry), DistiLLM's adaptive off-policy responses."""
import math
import re

import pytest
import torch

from baselines import distillm
from scd.distill.methods import method_from_config, resolve_spec
from scd.distill.parts import DIVERGENCES, METHODS, REFERENCE_SUFFIX, RESPONSES, preset_protocol, register_method
from scd.distill.plugins import load_plugins
from scd.distill.responses import needs_validation

load_plugins()


def _softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def _taid_terms(zs, zt, t):
    """By hand: p_t = softmax((1 - t) z_S + t z_T), q = softmax(z_S); (cross-entropy form, true KL) of p_t vs q."""
    pt, q = _softmax([(1 - t) * s + t * u for s, u in zip(zs, zt)]), _softmax(zs)
    ce = -sum(p * math.log(x) for p, x in zip(pt, q))
    kl = sum(p * math.log(p / x) for p, x in zip(pt, q))
    return ce, kl


def _update(values, t_start=0.4, t_end=1.0, alpha=0.5, beta=0.5, total=1000):
    """TAID's update by hand over a sequence of per-step loss values: t after each step."""
    t, m, prev, out = t_start, 0.0, None, []
    for step, v in enumerate(values, 1):
        if prev is not None:
            m = beta * m + (1 - beta) * (prev - v) / (prev + 1e-15)
            ramp = t_start + (t_end - t_start) * (step - 1) / total
            t = min(t_end, max(ramp, t + alpha * (1 / (1 + math.exp(-m))) * (1 - t)))
        prev = v
        out.append(t)
    return out


def test_taid_update_reads_the_cross_entropy_form_loss_as_the_reference_does():
    """Three steps on a 3-token vocabulary whose p_t changes entropy between steps: t follows the update computed by
    hand from -sum p_t log q (the reference's `distil_loss`), not from the true KL the loss trains on."""
    zt = [0.0, 2.0, 0.5]
    students = [[3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 1.5, 0.2]]
    taid = DIVERGENCES.get("taid")(alpha=0.5, beta=0.5).train()
    mask = torch.ones(1, 1, dtype=torch.bool)
    ts, ces, kls = [], [], []
    for step, zs in enumerate(students, 1):
        ce, kl = _taid_terms(zs, zt, float(taid.t))
        ces.append(ce)
        kls.append(kl)
        value = taid(torch.tensor([[zs]]), torch.tensor([[zt]]), mask)
        assert float(value.sum()) == pytest.approx(kl, rel=1e-5)  # what it trains on and logs: the true KL
        taid.after_step(123.0, step, 1000)  # the step's total loss is not what it reads
        ts.append(float(taid.t))
    expected, from_kl = _update(ces), _update(kls)
    assert ts == pytest.approx(expected, abs=1e-6)
    assert abs(expected[-1] - from_kl[-1]) > 1e-3  # the two readings give different t: the test tells them apart


def test_taid_ramp_counts_the_steps_before_this_one():
    """Non-adaptive, t is the ramp at the reference's progress: global_step (steps done before this one) / total."""
    taid = DIVERGENCES.get("taid")(adaptive=False).train()
    mask = torch.ones(1, 1, dtype=torch.bool)
    ts = []
    for step in range(1, 5):
        taid(torch.randn(1, 1, 5), torch.randn(1, 1, 5), mask)
        taid.after_step(0.0, step, 10)
        ts.append(float(taid.t))
    assert ts == pytest.approx([0.4, 0.4 + 0.6 * 1 / 10, 0.4 + 0.6 * 2 / 10, 0.4 + 0.6 * 3 / 10])


# ---- reference presets beside the suite's common ones -------------------------------------------------------------

def _reference_presets() -> list[str]:
    return [name for name in METHODS if preset_protocol(name) == "reference"]


def test_distillm_is_registered_and_fed_its_validation_split_by_the_stage():
    assert "adaptive_off_policy" in RESPONSES and set(distillm.PRESETS) <= set(METHODS)
    assert needs_validation(distillm.AdaptiveOffPolicy()) and not needs_validation(RESPONSES.get("gold")())


def test_taid_distillm_and_gkd_each_have_a_reference_preset_beside_the_common_one():
    pairs = {name[: -len(REFERENCE_SUFFIX)] for name in _reference_presets()}
    assert {"taid", "gkd", "distillm"} <= pairs
    for common in pairs:
        assert common in METHODS and preset_protocol(common) == "common"
        ref, base = resolve_spec(f"{common}{REFERENCE_SUFFIX}", {}), resolve_spec(common, {})
        # the same method: only the protocol's settings differ
        assert (ref["divergence"], ref["responses"], ref["schedule"]) == \
            (base["divergence"], base["responses"], base["schedule"])
        assert base["alpha"] == 0.5 and ref["alpha"] == 1.0 and ref["temperature"] == 1.0  # pure distillation


def test_the_reference_presets_carry_the_settings_the_reference_code_fixes():
    """The values read in the reference code (SakanaAI/TAID scripts/phi-3/taid.sh and src/arguments.py; TRL's
    GKDConfig defaults; jongwooko/distillm scripts/gpt2/distillm/*.sh and arguments.py)."""
    taid = method_from_config("taid_ref", {})
    assert (taid.divergence.t_start, taid.divergence.t_end, taid.divergence.alpha, taid.divergence.beta,
            taid.divergence.adaptive) == (0.4, 1.0, 5e-4, 0.99, True)
    gkd = method_from_config("gkd_ref", {})
    assert (gkd.responses.lmbda, gkd.responses.temperature, gkd.options["beta"]) == (0.5, 0.9, 0.5)
    assert method_from_config("gkd", {}).responses.temperature == 1.0  # the common preset: the suite's
    d = method_from_config("distillm_ref", {})
    assert d.options == {"skew": 0.1} and d.divergence is DIVERGENCES.get("skew_kl")
    src = d.responses
    assert (src.threshold, src.loss_eps, src.threshold_step, src.capacity, src.replay_ratio, src.temperature) == \
        (0.0, 0.1, 0.1, 1000, "decreasing", 1.0)


@pytest.mark.parametrize("name", _reference_presets() + [n for n, spec in distillm.PRESETS.items()
                                                          if spec.get("protocol") == "reference"])
def test_reference_presets_train_on_the_divergence_alone(name):
    """No CE term on gold rows: the loss is the divergence term, whatever the CE is."""
    torch.manual_seed(0)
    method = method_from_config(name, {})
    s, t = torch.randn(2, 5, 7, requires_grad=True), torch.randn(2, 5, 7)
    labels = torch.randint(0, 7, (2, 5))
    labels[:, :2] = -100
    loss, stats = method.loss(s, t, labels, method.weighting.weights({"input_ids": labels}, method.alpha),
                              torch.ones(2, dtype=torch.bool))
    assert stats["ce"] > 0 and float(loss.detach()) == pytest.approx(stats["divergence"], rel=1e-6)
    common = method_from_config(name[: -len(REFERENCE_SUFFIX)], {})
    loss, stats = common.loss(s, t, labels, common.weighting.weights({"input_ids": labels}, common.alpha),
                              torch.ones(2, dtype=torch.bool))
    assert float(loss.detach()) == pytest.approx(0.5 * stats["divergence"] + 0.5 * stats["ce"], rel=1e-5)


def test_methods_list_marks_each_preset_reference_or_common(capsys):
    from scd.cli import main

    main(["methods", "list"])
    out = capsys.readouterr().out
    presets = out[out.index("method presets"):out.index("\ndivergences:")]
    for name in METHODS:
        assert re.search(rf"^  {re.escape(name)} +{preset_protocol(name)} ", presets, re.M), name
        display = METHODS.meta(name).get("display")
        assert not display or f"shown as: {display}" in presets
    configured = out[:out.index("method presets")]
    assert re.search(r"^  taid +\[common\] ", configured, re.M)
    assert re.search(r"^  taid_ref +\[reference\] schedule=best divergence=taid .*alpha=1.0", configured, re.M)


def test_the_loss_only_distillm_rows_are_named_as_losses():
    for name in METHODS:
        if resolve_spec(name, {})["divergence"] in ("skew_kl", "skew_rkl") and \
                resolve_spec(name, {})["responses"] == "gold":
            assert "DistiLLM's loss" in METHODS.meta(name)["display"], name


@pytest.mark.parametrize("name,kw,message", [
    ("mine_ref", {"protocol": "common"}, "a reference preset, and only one, is named"),
    ("mine", {"protocol": "reference"}, "a reference preset, and only one, is named"),
    ("mine", {"protocol": "authors"}, "protocol must be one of common, reference, got 'authors'"),
])
def test_a_preset_with_a_bad_protocol_is_refused(name, kw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        register_method(name, divergence="fkl", **kw)
    assert name not in METHODS


# ---- DistiLLM: adaptive off-policy responses with a replay buffer -------------------------------------------------

def test_distillm_threshold_follows_the_validation_loss_as_the_reference_does():
    """+0.1 when the loss is at least loss_eps above the last loss that moved it (the first one at first); capped."""
    src = method_from_config("distillm_ref", {}).responses
    for loss in [2.0, 2.05, 2.15, 2.2, 2.26, 1.0]:
        src.observe(loss)
    assert src.threshold == pytest.approx(0.2) and src.prev_loss == 2.26
    high = method_from_config("distillm", {"responses_options": {"init_threshold": 0.95}}).responses
    for loss in [1.0, 2.0, 3.0]:
        high.observe(loss)
    assert high.threshold == 1.0
    src._run_rows, src._seen = 100, 25  # a quarter through the run
    expected = {"decreasing": 0.2 * 0.75, "constant": 0.2 * 0.5, "increasing": 0.2 * 0.25}
    for ratio, value in expected.items():
        src.replay_ratio = ratio
        assert src.sampling_threshold() == pytest.approx(value)


@pytest.mark.parametrize("options,message", [
    ({"replay_ratio": "sometimes"}, "replay_ratio must be one of decreasing, constant, increasing, got 'sometimes'"),
    ({"capacity": 0}, "capacity must be at least 1 sample, got 0"),
    ({"init_threshold": 1.5}, "init_threshold must be in [0, 1], got 1.5"),
    ({"sampling_temperature": 0.0}, "sampling_temperature must be > 0, got 0.0"),
])
def test_distillm_bad_options_are_refused_in_one_line(options, message):
    with pytest.raises(ValueError, match=re.escape(f"adaptive_off_policy: {message}")):
        method_from_config("distillm", {"responses_options": options})


def _tiny(tiny_distill):
    from scd.distill.teacher import live_teacher, open_cache
    from scd.models import load_pretrained
    from scd.prepared import Prepared

    root, _ = tiny_distill
    prep = Prepared.open(root / "data")
    live = live_teacher(prep, root / "teacher1", torch.device("cpu"), "fp32", 16)
    return prep, live, open_cache(prep, live), load_pretrained(root / "student" / "best")


def test_distillm_batches_are_gold_fresh_samples_or_replays(tiny_distill):
    from scd.data import collate

    prep, live, cache, student = _tiny(tiny_distill)
    pad = prep.tokenizer.pad_token_id
    validation = prep.encoded("validation")[:8]
    src = method_from_config("distillm", {"responses_options": {"capacity": 6, "replay_ratio": "increasing"}}
                             ).responses
    rows = src.stage_rows("best", cache.train_rows[:6], [], cache, live)
    batch = collate(rows, pad) | {"index": torch.arange(6)}
    with pytest.raises(ValueError, match="got no validation split before training"):
        src.batch(batch, student, live)
    src.begin_run(validation, total_steps=4, batch_size=6)
    # threshold 0 (the reference's start): the gold batch; the validation loss measured before training
    same, live_needed = src.batch(batch, student, live)
    assert same is batch and not live_needed and src.counts["gold"] == 1
    v = collate(validation, pad)
    with torch.no_grad():
        logits = student(input_ids=v["input_ids"], attention_mask=v["attention_mask"]).logits
    by_hand = torch.nn.functional.cross_entropy(logits.flatten(0, 1), v["labels"].flatten(), ignore_index=-100)
    assert src.val_losses == [pytest.approx(float(by_hand), rel=1e-5)]
    # threshold 1, buffer not full: fresh student samples of the batch's prompts, into the buffer
    src.threshold = 1.0
    new, live_needed = src.batch(batch, student, live)  # rows 6..12 of an epoch of 6: a new epoch, measured again
    assert len(src.val_losses) == 2 and live_needed and not new["labelled"].any() and src.counts["generated"] == 1
    for i, row in enumerate(rows):
        ids = new["input_ids"][i][new["attention_mask"][i].bool()].tolist()
        assert ids[:len(row.prompt_ids)] == row.prompt_ids and len(ids) > len(row.prompt_ids)
    assert list(src.buffer) == [(r.prompt_ids, new["input_ids"][i][new["attention_mask"][i].bool()].tolist()
                                 [len(r.prompt_ids):]) for i, r in enumerate(rows)]
    # buffer full (capacity 6), fresh-sampling threshold 1 * progress: replays drawn from the buffer
    src._seen = 0
    replay, live_needed = src.batch(batch, student, live)
    assert live_needed and src.counts["replayed"] == 1 and not replay["labelled"].any()
    kept = {tuple(p + s) for p, s in src.buffer}
    assert {tuple(replay["input_ids"][i][replay["attention_mask"][i].bool()].tolist()) for i in range(6)} <= kept


def test_distillm_runs_through_the_distillation_loop(tiny_distill, monkeypatch):
    """The whole method in the loop: the distillation stage hands its source the validation split and the run's
    length before training (responses.needs_validation), and the source samples, replays and follows the loss."""
    from scd.config import stage_config
    from scd.stages import distill as stage

    root, config = tiny_distill
    built = []

    def keep(name, spec):  # the stage's own method, kept to look at its source afterwards
        built.append(method_from_config(name, spec))
        return built[-1]

    monkeypatch.setattr(stage, "method_from_config", keep)
    spec = {"preset": "distillm_ref", "responses_options": {"init_threshold": 0.5, "capacity": 64}}
    cfg = stage_config(config(1, 1, {"dl": spec}), "synthetic_subdomains", "distill", "dl")
    summary = stage.distill(cfg, 0, root / "data", root / "teacher1", root / "student", root / "m_distillm")
    src = built[0].responses
    assert math.isfinite(summary["best_val_score"]) and summary["teacher_seconds"] > 0  # scored by the live teacher
    assert src.counts["generated"] > 0 and src.counts["gold"] > 0 and 0 < len(src.buffer) <= 64
    assert len(src.val_losses) >= 1
