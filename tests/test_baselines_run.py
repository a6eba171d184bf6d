"""Every configured method through the real distillation loop, and the parts with behaviour beyond a divergence:
TAID's state, sequence-level KD's targets, on-policy GKD's samples, a throwaway baseline added from outside."""
import math
import os

import pytest
import torch
from mlflow.tracking import MlflowClient

from scd import mlflow_sync, tracking
from scd.config import ConfigError, load_config, stage_config
from scd.data import collate
from scd.distill import plugins
from scd.distill.checks import check_divergence
from scd.distill.methods import method_from_config, resolve_spec
from scd.distill.parts import DIVERGENCES, register_divergence
from scd.distill.plugins import load_plugins
from scd.distill.teacher import greedy_targets, live_teacher, open_cache
from scd.models import load_pretrained
from scd.prepared import Prepared
from scd.stages.distill import distill, load_objective
from scd.stages.teacher_outputs import write_teacher_outputs

DEFAULT_METHODS = list(load_config("default")["methods"])


def run(tiny_distill, name, spec, out, stages=1, checkpoints=1):
    root, config = tiny_distill
    cfg = stage_config(config(checkpoints, stages, {name: spec}), "synthetic_subdomains", "distill", name)
    summary = distill(cfg, 0, root / "data", root / f"teacher{checkpoints}", root / "student", root / out)
    summary["mlflow_run_id"] = mlflow_sync.sync(cfg.results_dir)[summary["run_id"]]  # its run record, logged
    client = MlflowClient(tracking.tracking_uri(cfg))
    return summary, client, cfg


@pytest.mark.parametrize("name", DEFAULT_METHODS)
def test_every_default_method_trains_the_student(tiny_distill, name):
    """Each leaderboard method runs the whole loop: finite losses, a changed student, its run logged."""
    root, _ = tiny_distill
    spec = load_config("default")["methods"][name]
    summary, client, _ = run(tiny_distill, name, spec, f"m_{name}")
    losses = [m.value for m in client.get_metric_history(summary["mlflow_run_id"], "train/loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    before = load_pretrained(root / "student" / "best").state_dict()
    after = load_pretrained(root / f"m_{name}" / "best").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert client.get_run(summary["mlflow_run_id"]).data.tags["scd.method"] == name
    if method_from_config(name, spec).objective is not None:  # trained parts / state are saved with the student
        assert (root / f"m_{name}" / "best" / "objective.safetensors").exists()


def test_taid_state_is_saved_and_restores_the_same_trajectory(tiny_distill):
    load_plugins()
    taid_cls = DIVERGENCES.get("taid")
    losses = [2.0, 1.8, 1.7, 1.75, 1.5, 1.4, 1.39, 1.2]

    def feed(obj, values, start):
        ts = []
        for i, v in enumerate(values, start):
            obj._sum, obj._count = v, 1  # what forward() accumulated over the step's batch
            obj.after_step(v, i, len(losses))
            ts.append(float(obj.t))
        return ts

    whole = taid_cls()
    full = feed(whole, losses, 1)
    # the ramp's progress counts the steps before this one (the reference's global_step): 7 / 8 at the last
    assert full[0] == pytest.approx(0.4) and full[-1] == pytest.approx(0.4 + 0.6 * 7 / 8) and full == sorted(full)
    first = taid_cls()
    feed(first, losses[:4], 1)
    resumed = taid_cls()
    resumed.load_state_dict(first.state_dict())
    assert feed(resumed, losses[4:], 5) == full[4:]
    fresh = taid_cls()  # without the state, the momentum and previous loss are lost: a different trajectory
    assert feed(fresh, losses[4:], 5) != full[4:]
    # in a run: saved beside the best student, loadable into a new objective
    summary, client, _ = run(tiny_distill, "taid", {"divergence": "taid"}, "taid_run", stages=2)
    restored = taid_cls()
    load_objective(restored, tiny_distill[0] / "taid_run" / "best" / "objective.safetensors")
    ts = [m.value for m in client.get_metric_history(summary["mlflow_run_id"], "taid/t")]
    assert ts == sorted(ts) and 0.4 <= ts[0] and float(restored.t) >= ts[0]
    assert float(restored.t) in [pytest.approx(t) for t in ts] or float(restored.t) == pytest.approx(1.0)


def test_seqkd_trains_on_the_teachers_greedy_responses(tiny_distill):
    root, config = tiny_distill
    cfg = stage_config(config(1, 1, {"seqkd": {}}), "synthetic_subdomains", "distill", "seqkd")
    prep = Prepared.open(root / "data")
    live = live_teacher(prep, root / "teacher1", torch.device("cpu"), cfg.precision, cfg.evaluation.batch_size)
    cache = open_cache(prep, live)
    method = method_from_config("seqkd", {})
    rows = method.responses.stage_rows("best", cache.train_rows, [], cache, live)
    model = load_pretrained(root / "teacher1" / "best")
    expected = greedy_targets(model, prep.tokenizer, cache.train_rows, live.max_new_tokens, 64,
                              torch.device("cpu"))
    assert [r.answer_ids for r in rows] == expected
    assert [r.prompt_ids for r in rows] == [r.prompt_ids for r in cache.train_rows]
    assert any(r.answer_ids != g.answer_ids for r, g in zip(rows, cache.train_rows))  # not the gold answers
    assert all(r.labelled for r in rows) and method.alpha == 0.0 and not method.needs_teacher


def test_on_policy_batches_are_student_samples_scored_by_the_live_teacher(tiny_distill):
    root, config = tiny_distill
    cfg = stage_config(config(1, 1, {"gkd": {}}), "synthetic_subdomains", "distill", "gkd")
    prep = Prepared.open(root / "data")
    live = live_teacher(prep, root / "teacher1", torch.device("cpu"), cfg.precision, cfg.evaluation.batch_size)
    cache = open_cache(prep, live)
    method = method_from_config("gkd", {"responses_options": {"lmbda": 1.0}})
    rows = method.responses.stage_rows("best", cache.train_rows[:6], [], cache, live)
    batch = collate(rows, prep.tokenizer.pad_token_id) | {"index": torch.arange(6)}
    student = load_pretrained(root / "student" / "best")
    new, needs_live = method.responses.batch(batch, student, live)
    assert needs_live and not new["labelled"].any()
    eos = prep.tokenizer.eos_token_id
    for i, row in enumerate(rows):  # the prompt is kept; the response is the student's, ending at EOS or the cap
        ids = new["input_ids"][i][new["attention_mask"][i].bool()].tolist()
        assert ids[:len(row.prompt_ids)] == row.prompt_ids
        response = ids[len(row.prompt_ids):]
        assert response[-1] == eos or len(response) == live.max_new_tokens
    # the live teacher's logits are those of the teacher model on the sampled sequences
    logits, _ = live.forward("best", new)
    ref = load_pretrained(root / "teacher1" / "best")(input_ids=new["input_ids"],
                                                      attention_mask=new["attention_mask"]).logits
    assert torch.allclose(logits, ref[..., :logits.shape[-1]], atol=1e-5)
    # and the loss on them is TRL's generalized JSD (beta 0.5) over the sampled tokens
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDTrainer

    s_logits = student(input_ids=new["input_ids"], attention_mask=new["attention_mask"]).logits[..., :logits.shape[-1]]
    ours, _ = method.loss(s_logits, logits, new["labels"], torch.ones(6), new["labelled"])
    trl = GKDTrainer.generalized_jsd_loss(s_logits, logits, labels=new["labels"], beta=0.5)
    assert float(ours.detach()) == pytest.approx(float(trl.detach()), rel=1e-5)
    never = method_from_config("gkd", {"responses_options": {"lmbda": 0.0}})
    never.responses.stage_rows("best", cache.train_rows[:6], [], cache, live)
    same, needs_live = never.responses.batch(batch, student, live)
    assert not needs_live and same is batch


def test_a_baseline_added_from_outside_needs_no_core_change(tiny_distill, capsys, monkeypatch):
    """A throwaway divergence registered here, by a plugin module, is configurable, runs, logs and is listed."""
    from scd.cli import main

    @register_divergence("throwaway_l2", reference="a test, 2026")
    def squared_error(student_logits, teacher_logits, mask, temperature=1.0, scale=1.0):
        """Squared error between the two probability vectors, times scale."""
        q = torch.softmax(student_logits.float() / temperature, -1)
        p = torch.softmax(teacher_logits.detach().float() / temperature, -1)
        return torch.where(mask, scale * ((p - q) ** 2).sum(-1), torch.zeros(mask.shape))

    try:
        assert check_divergence("throwaway_l2") == []  # the generic property check runs on a plugin's divergence too
        spec = {"divergence": "throwaway_l2", "options": {"scale": 2.0}}
        summary, client, cfg = run(tiny_distill, "mine", spec, "throwaway")
        assert cfg.method == "mine" and cfg.spec.divergence == "throwaway_l2" and cfg.spec.options == spec["options"]
        run_data = client.get_run(summary["mlflow_run_id"]).data
        assert run_data.params["method.divergence"] == "throwaway_l2"
        assert run_data.params["method.options.scale"] == "2.0"
        divergences = [m.value for m in client.get_metric_history(summary["mlflow_run_id"], "train/divergence")]
        assert divergences and all(v > 0 for v in divergences)
        with pytest.raises(ConfigError, match="has no option 'scael'.*scale=1.0"):
            tiny_distill[1](1, 1, {"mine": {"divergence": "throwaway_l2", "options": {"scael": 2}}})
        main(["methods", "list"])
        listing = capsys.readouterr().out
        assert "throwaway_l2" in listing and "scale=1.0" in listing and "a test, 2026" in listing
    finally:
        DIVERGENCES._items.pop("throwaway_l2", None)


def test_plugins_load_from_the_entry_point_group(monkeypatch):
    import importlib.metadata
    import sys
    import types

    module = types.ModuleType("my_lab_baselines")
    module.loaded = False

    class EntryPoint:
        name, group = "my_lab", "scd_bench.baselines"

        def load(self):
            module.loaded = True
            return module

    monkeypatch.setitem(sys.modules, "my_lab_baselines", module)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [EntryPoint()] if group == "scd_bench.baselines" else [])
    monkeypatch.setattr(plugins, "_loaded", False)
    plugins.load_plugins()
    assert module.loaded


def test_presets_resolve_and_unknown_names_suggest():
    assert resolve_spec("seqkd", {})["responses"] == "teacher"
    assert resolve_spec("x", {"preset": "gkd"})["divergence"] == "jsd"
    assert resolve_spec("rkl", {"divergence": "rkl"})["schedule"] == "best"
    with pytest.raises(KeyError, match="Did you mean 'gkd'"):
        resolve_spec("x", {"preset": "gdk"})
    with pytest.raises(ValueError, match="no divergence given"):
        resolve_spec("x", {})
    # composing SCD+AW with another divergence is one line
    m = method_from_config("scd+aw.rkl", {"schedule": "scd", "weighting": "aw", "divergence": "rkl"})
    assert type(m.schedule).__name__ == "ScheduledCheckpoint" and type(m.weighting).__name__ == "AdaptiveWeight"


def test_the_live_teachers_seconds_are_recorded_for_on_policy_methods_only(tiny_distill):
    """The compute table's live-teacher column: with the shared teacher outputs on disk (as in the workflow), TD runs
    no teacher at all and on-policy GKD runs it on every sampled batch (the step's teacher logits), timed."""
    root, config = tiny_distill
    specs = {"td": {}, "gkd": {"responses": "on_policy", "responses_options": {"lmbda": 1.0}, "divergence": "jsd"}}
    cfg = config(1, 1, specs)
    cache = root / "teacher_outputs_timed"
    if not cache.exists():
        write_teacher_outputs(stage_config(cfg, "synthetic_subdomains", "teacher_outputs"), 0, root / "data",
                              root / "teacher1", cache)
    seconds = {name: distill(stage_config(cfg, "synthetic_subdomains", "distill", name), 0, root / "data",
                             root / "teacher1", root / "student", root / f"m_{name}_timed", cache)["teacher_seconds"]
               for name in specs}
    assert seconds["td"] == 0 and seconds["gkd"] > 0, seconds
