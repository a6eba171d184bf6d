"""Guards around training: a diverged loss stops the job (no output, no score, a FAILED run), an unsound divergence
is refused before training, distillation stages must divide the epochs, and method part options must fit their
declared types."""
import dataclasses
import math

import pytest
import torch
from conftest import TINY_SYNTHETIC
from mlflow.tracking import MlflowClient
from transformers import LlamaConfig, LlamaForCausalLM

from scd import mlflow_sync, tracking
from scd.cli import main as scd_main
from scd.config import CONFIG_DIR, ConfigError, ablation_plan, load_config, stage_config
from scd.data import Encoded
from scd.distill.checks import UnsoundDivergence, not_checkable, require_sound
from scd.distill.methods import method_from_config, uneven_stages
from scd.distill.parts import DIVERGENCES, RESPONSES, SCHEDULES, WEIGHTINGS, hyperparameters, option_type_problems
from scd.distill.plugins import load_plugins
from scd.settings import Optimization, to_json
from scd.stages.distill import distill
from scd.stages.sft import ce_loss, sft
from scd.train import TrainingDiverged, train

TASK = "synthetic_subdomains"
PROFILES = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem not in ("config", "schema"))


# ---- a diverged loss stops training -------------------------------------------------------------------------------

def tiny_model():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=11, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=32, max_position_embeddings=32))


def test_a_validation_score_that_is_no_number_stops_training():
    with pytest.raises(ValueError, match=r"^validation score nan after epoch 1 \(stage 1 of 2\): the task's metric"):
        train(tiny_model(), tiny_data(), Optimization(epochs=2, batch_size=4, lr=1e-3), pad_id=0, seed=0,
              loss_fn=ce_loss, validate=lambda m: math.nan, log=lambda m, s: None, where="stage 1 of 2")


def tiny_data():
    g = torch.Generator().manual_seed(0)
    return [Encoded(torch.randint(3, 11, (4,), generator=g).tolist(),
                    torch.randint(3, 11, (2,), generator=g).tolist() + [2]) for _ in range(12)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_loss_that_turns_nan_or_infinite_stops_training_at_its_step(bad):
    calls = []

    def loss_fn(model, batch, n_tokens):  # CE, with a "kd" term that goes bad at the 3rd step
        loss, _ = ce_loss(model, batch, n_tokens)
        calls.append(1)
        kd = torch.tensor(bad) if len(calls) == 3 else torch.tensor(0.5)
        return loss + kd, {"kd": float(kd), "ce": float(loss.detach())}

    model, after, validated = tiny_model(), [], []
    with pytest.raises(TrainingDiverged) as e:
        train(model, tiny_data(), Optimization(epochs=2, batch_size=4, lr=1e-2), pad_id=0, seed=0, loss_fn=loss_fn,
              validate=lambda m: validated.append(1) or 0.5, log=lambda m, s: None,
              after_step=lambda loss, s: after.append(s), step_offset=10, where="stage 2 of 4",
              settings="training.distill")
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and "\n" not in msg
    assert msg.startswith(f"training diverged at step 13 (stage 2 of 4): loss {bad:.4g}; terms: kd={bad:.4g} ce=")
    assert "training.distill.lr" in msg and "training.distill.grad_clip" in msg
    assert e.value.step == 13 and after == [11, 12] and not validated  # stopped in epoch 1, before its 3rd step
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step was never applied


def test_a_huge_learning_rate_stops_training():
    with pytest.raises(TrainingDiverged, match=r"^training diverged at step 2: loss nan; lower the learning rate"):
        train(tiny_model(), tiny_data(), Optimization(epochs=3, batch_size=4, lr=1e30), pad_id=0, seed=0,
              loss_fn=ce_loss, validate=lambda m: 0.0, log=lambda m, s: None)


def guarded_config(root, methods=None, **training):
    """The tiny_distill fixture's configuration (1 checkpoint, 1 stage), with training settings replaced."""
    distill_ = {"epochs": 1, "stages": 1, "trajectory": 1, "batch_size": 32, "probe_size": 32}
    return load_config("smoke", {"results_dir": str(root), "methods": methods or {},
                                 "training": {"teacher": {"save_checkpoints": 1}},
                                 "task_overrides": {TASK: {"task_options": TINY_SYNTHETIC, "training": {
                                     "teacher": {"epochs": 3, "batch_size": 32},
                                     "distill": distill_ | training.pop("distill", {}), **training}}}})


def last_run(job):
    mlflow_sync.sync(job.results_dir)  # the jobs' run records, logged as their MLflow runs
    client = MlflowClient(tracking.tracking_uri(job))
    exp = client.get_experiment_by_name(job.mlflow.experiment)
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]


def test_a_diverged_sft_job_saves_nothing_and_its_run_is_failed(tiny_distill):
    root, _ = tiny_distill
    job = stage_config(guarded_config(root, student={"lr": 1e30}), TASK, "sft", "student")
    assert job.training.grad_clip  # the smoke profile clips: the gradient norm is what turns NaN first
    with pytest.raises(TrainingDiverged) as e:
        sft(job, 0, root / "data", root / "nan_student")
    assert one_line(e).startswith("training diverged at step 2 (student SFT): gradient norm nan (loss ")
    assert str(e.value).endswith("; lower the learning rate (training.student.lr)")
    assert not (root / "nan_student").exists()
    run = last_run(job)
    assert run.info.status == "FAILED" and run.data.tags["scd.stage"] == "student_sft"


def test_a_diverged_distillation_writes_no_model_and_no_evaluation(tiny_distill, capsys):
    """`scd distill ... --eval-out` as the workflow runs it: one line, exit 2, no model, no evaluation summary (so no
    leaderboard row), the MLflow run FAILED."""
    root, _ = tiny_distill
    job = stage_config(guarded_config(root, {"kd": {"divergence": "fkl"}}, distill={"lr": 1e30, "grad_clip": 0}),
                       TASK, "distill", "kd")
    out, evaluation = root / "nan_kd", root / "nan_kd_eval.json"
    argv = ["distill", "--task", TASK, "--config", to_json(job), "--seed", "0", "--method", "kd", "--data",
            str(root / "data"), "--teacher", str(root / "teacher1"), "--student", str(root / "student"), "--out",
            str(out), "--eval-out", str(evaluation)]
    assert scd_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("scd distill: error: training diverged at step ")
    assert "(stage 1 of 1, teacher best): loss nan; terms: divergence=" in err and " ce=" in err
    assert err.endswith("; lower the learning rate (training.distill.lr) or set training.distill.grad_clip "
                        "(e.g. 1.0)\n")
    assert not out.exists() and not evaluation.exists()
    run = last_run(job)
    assert run.info.status == "FAILED" and run.data.tags["scd.method"] == "kd"


# ---- an unsound divergence is refused before training ---------------------------------------------------------------

def _kl(s, t, mask, temperature=1.0):
    logq = torch.log_softmax(s.float() / temperature, -1)
    logp = torch.log_softmax(t.detach().float() / temperature, -1)
    return torch.where(mask, (logp.exp() * (logp - logq)).sum(-1), torch.zeros(mask.shape))


def _nan(s, t, mask, temperature=1.0):
    return torch.where(mask, _kl(s, t, mask, temperature) * torch.tensor(math.nan), torch.zeros(mask.shape))


def _negative(s, t, mask, temperature=1.0):
    return -_kl(s, t, mask, temperature)


def _declared_negative(s, t, mask, temperature=1.0):
    return -_kl(s, t, mask, temperature)


_declared_negative.nonnegative = False


def _scaled(s, t, mask, temperature=1.0, scale: float = 1.0):  # negative for a negative option
    return scale * _kl(s, t, mask, temperature)


@pytest.fixture
def registered(monkeypatch):
    """Divergences registered as a plugin would register them (under temporary names)."""
    load_plugins()
    for name, fn in (("tmp_nan", _nan), ("tmp_negative", _negative), ("tmp_declared_negative", _declared_negative),
                     ("tmp_scaled", _scaled)):
        monkeypatch.setitem(DIVERGENCES._items, name, fn)
        monkeypatch.setitem(DIVERGENCES._meta, name, {"reference": "a test"})


@pytest.mark.parametrize("name, options, property_", [
    ("tmp_nan", None, "value is not finite (NaN or inf) at "),
    ("tmp_negative", None, "value is negative (min "),
    ("tmp_scaled", {"scale": -1.0}, "value is negative (min "),
])
def test_a_distillation_job_refuses_an_unsound_divergence_before_training(registered, tmp_path, name, options,
                                                                          property_):
    with pytest.raises(UnsoundDivergence) as e:
        require_sound(name, options)
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and "\n" not in msg
    assert msg.startswith(f"divergence {name!r}") and property_ in msg and f"scd methods check {name}" in msg
    # the job refuses it first thing: no data read, no run started, nothing written
    cfg = load_config("smoke", {"results_dir": str(tmp_path), "methods": {"bad": {"divergence": name,
                                                                                  "options": options or {}}}})
    job = stage_config(cfg, TASK, "distill", "bad")
    with pytest.raises(UnsoundDivergence, match=f"divergence {name!r}"):
        distill(job, 0, tmp_path / "no-data", tmp_path / "t", tmp_path / "s", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_sound_divergence_passes_the_pre_check(registered):
    require_sound("tmp_declared_negative")  # declares nonnegative = False
    require_sound("tmp_scaled", {"scale": 2.0})


@pytest.mark.parametrize("profile", PROFILES)
def test_every_shipped_method_passes_the_pre_check(profile):
    cfg = load_config(profile)
    for name in cfg["run_methods"]:
        spec = stage_config(cfg, cfg["tasks"][0], "distill", name).spec
        if not_checkable(spec.divergence) is None:
            require_sound(spec.divergence, spec.options)


# ---- distillation stages divide the epochs ---------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_every_shipped_profile_splits_its_distillation_epochs_evenly(profile):
    """Every distillation job of every shipped profile, ablation variants included: stages divide the epochs, so
    each stage trains epochs / stages epochs and the total is the configured one."""
    cfg = load_config(profile)
    plan = ablation_plan(cfg)
    with_variants = cfg | {"methods": cfg["methods"] | plan["variants"]}
    jobs = [(t, m) for t in cfg["tasks"] for m in cfg["run_methods"]]
    jobs += [(t, m) for t in plan["tasks"] for m in plan["variants"]]
    assert jobs
    for task, method in jobs:
        job = stage_config(with_variants, task, "distill", method)
        assert job.training.epochs % job.stages == 0, (task, method, job.training.epochs, job.stages)


def one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_stages_that_do_not_divide_the_epochs_are_refused_with_the_fix():
    with pytest.raises(ConfigError) as e:  # the default profile's 4 stages
        load_config("default", {"training": {"distill": {"epochs": 6}}})
    assert one_line(e) == (
        "invalid configuration: task 'synthetic_subdomains', every method: training.distill.epochs 6 does not split "
        "into 4 stages of whole epochs (training.distill.stages: 4); set training.distill.epochs to a multiple of 4 "
        "(e.g. 8) or training.distill.stages to a divisor of 6 (1, 2, 3, 6)")
    with pytest.raises(ConfigError) as e:  # more stages than epochs: each stage was silently given a whole epoch
        load_config("default", {"run_methods": ["td", "scd"],
                                "task_overrides": {"pubmedqa": {"training": {"distill": {"epochs": 2}}}}})
    assert "task 'pubmedqa', every method: training.distill.epochs 2 does not split into 4 stages" in one_line(e)
    with pytest.raises(ConfigError) as e:  # a method's own stages
        load_config("default", {"run_methods": ["td", "scd"], "methods": {"scd": {"stages": 3}},
                                "tasks": ["synthetic"]})
    assert one_line(e).startswith("invalid configuration: task 'synthetic_subdomains', method 'scd': training."
                                  "distill.epochs 8 does not split into 3 stages of whole epochs (methods.scd.stages: "
                                  "3); set training.distill.epochs to a multiple of 3 (e.g. 9) or methods.scd.stages "
                                  "to a divisor of 8")
    with pytest.raises(ConfigError) as e:  # a granularity ablation variant on a task of 4 epochs
        load_config("ablations", {"ablations": {"tasks": ["pubmedqa"]}})
    assert one_line(e) == (
        "invalid configuration: task 'pubmedqa', methods 'cd.n8', 'scd+aw.n8': training.distill.epochs 4 does not "
        "split into 8 stages of whole epochs (ablations.granularity.values: 8); set training.distill.epochs to a "
        "multiple of 8 (e.g. 8) or only divisors of 4 in ablations.granularity.values (1, 2, 4)")


def test_uneven_stages():
    assert uneven_stages(8, 4) is None and uneven_stages(4, 4) is None and uneven_stages(3, 1) is None
    assert "multiple of 4 (e.g. 4)" in uneven_stages(2, 4) and "multiple of 3 (e.g. 9)" in uneven_stages(8, 3)


def test_a_distillation_job_refuses_uneven_stages_itself(tmp_path):
    """A job given as JSON (not through the configuration's check) refuses before it reads anything."""
    job = stage_config(load_config("smoke", {"results_dir": str(tmp_path)}), TASK, "distill", "td")
    assert job.stages == 2
    job = dataclasses.replace(job, training=dataclasses.replace(job.training, epochs=3))
    with pytest.raises(ValueError, match=r"^method 'td': training\.distill\.epochs 3 does not split into 2 stages"):
        distill(job, 0, tmp_path / "no-data", tmp_path / "t", tmp_path / "s", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- method part options fit their declared types --------------------------------------------------------------------

def test_a_schedule_option_of_the_wrong_type_names_its_key_and_type():
    with pytest.raises(ConfigError) as e:
        load_config("smoke", {"methods": {"scd": {"schedule_options": {"lam": "one"}}}})
    assert "methods.scd.schedule_options.lam: expected a number, got 'one' (default 1.0)" in str(e.value)
    assert "not supported between" not in str(e.value)
    with pytest.raises(ConfigError, match=r"methods\.gkd\.responses_options\.lmbda: expected a number, got 'half'"):
        load_config("smoke", {"methods": {"gkd": {"responses_options": {"lmbda": "half"}}}})
    with pytest.raises(ConfigError, match=r"methods\.taid\.options\.adaptive: expected true or false, got 'yes'"):
        load_config("smoke", {"methods": {"taid": {"options": {"adaptive": "yes"}}}})
    for key in ("alpha", "temperature"):  # the method's own keys are typed by the schema
        with pytest.raises(ConfigError, match=rf"methods\.scd\.{key} is invalid: 'one' is not of type 'number'"):
            load_config("smoke", {"methods": {"scd": {key: "one"}}})
    # a job built from JSON (no configuration check) says the same
    with pytest.raises(ValueError, match=r"^methods\.scd\.schedule_options\.lam: expected a number, got 'one'"):
        method_from_config("scd", {"schedule": "scd", "divergence": "fkl", "schedule_options": {"lam": "one"}})
    # an int is a number
    assert method_from_config("scd", {"schedule": "scd", "divergence": "fkl", "schedule_options": {"lam": 2}})


def test_an_ablation_variant_that_does_not_build_is_refused():
    with pytest.raises(ConfigError) as e:
        load_config("ablations", {"ablations": {"lam": {"methods": ["td"], "values": [0.5]}}})
    assert one_line(e) == ("invalid configuration: ablations.lam: variant 'td.lam0.5': schedule 'best' takes no "
                           "options, got ['lam']")


def _wrong(value):
    """A value of another type than `value`'s: a string for numbers and booleans, a number for strings."""
    return 1.5 if isinstance(value, str) else "wrong"


load_plugins()  # the registries complete: the core parts, every baseline, every plugin
PARTS = [(registry, name) for registry in (DIVERGENCES, SCHEDULES, WEIGHTINGS, RESPONSES) for name in registry
         if hyperparameters(registry.get(name))]


@pytest.mark.parametrize("registry, name", PARTS, ids=[f"{r.kind}:{n}" for r, n in PARTS])
def test_every_declared_hyperparameter_is_type_checked(registry, name):
    obj = registry.get(name)
    defaults = {k: v for k, v in hyperparameters(obj).items() if v is not None}
    assert option_type_problems(obj, defaults, "methods.m.options") == []
    for key, value in defaults.items():
        problems = option_type_problems(obj, {key: _wrong(value)}, "methods.m.options")
        assert len(problems) == 1 and problems[0].startswith(f"methods.m.options.{key}: expected "), problems
    assert PARTS  # the registries declare some
