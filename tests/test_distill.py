"""The distillation stage end to end on a tiny synthetic task: TD/CD/SCD/AW runs, staged training details."""
import dataclasses
import json
import shutil

import pytest
import torch
from conftest import TINY_SYNTHETIC
from mlflow.tracking import MlflowClient

import scd.train
from scd import mlflow_sync, tracking
from scd.config import common_settings, load_config, stage_config
from scd.data import collate
from scd.distill.context import StageContext
from scd.distill.probe import ProbeSet
from scd.distill.teacher import CheckpointOutputs, TeacherCache, live_teacher, open_cache, transfer_prompts
from scd.distill.trajectory import TrajectoryError, evenly_spaced
from scd.evaluate import gold_nll, response_logits
from scd.models import build_model, load_pretrained
from scd.prepared import Prepared
from scd.stages.distill import distill, initial_student, probe_set
from scd.stages.prepare import prepare
from scd.stages.teacher_outputs import write_teacher_outputs
from scd.tokens import response_mask

METHODS = {
    "td": {"schedule": "best", "divergence": "fkl", "weighting": "none"},
    "cd": {"schedule": "fixed_order", "divergence": "fkl", "weighting": "none"},
    "scd": {"schedule": "scd", "divergence": "fkl", "weighting": "none"},
    "scd+aw": {"schedule": "scd", "divergence": "fkl", "weighting": "aw"},
    "scd-val": {"schedule": "scd", "divergence": "fkl", "weighting": "none",
                "schedule_options": {"probe_source": "validation", "scale": "normalized"}},
}


@pytest.fixture(scope="module")
def trained(tiny_distill):
    root, config = tiny_distill
    sound_teacher(root)
    return root, lambda checkpoints, stages: config(checkpoints, stages, METHODS)


def sound_teacher(root):
    """`teacher3` with T* at the end of its training (its last checkpoint's weights and step), as `teacher3s`. The
    tiny teacher's validation score may peak at its first checkpoint, which would make T* that checkpoint's weights
    a second time in the trajectory ckpt-1, ckpt-2, best (the distillation job refuses such a trajectory)."""
    sound = root / "teacher3s"
    if not sound.exists():
        shutil.copytree(root / "teacher3", sound)
        shutil.rmtree(sound / "best")
        shutil.copytree(sound / "checkpoints" / "ckpt-3", sound / "best")
        saved = json.loads((sound / "summary.json").read_text())
        (sound / "summary.json").write_text(json.dumps(saved | {"best_step": saved["checkpoints"]["ckpt-3"]}))
    return sound


def teacher_dir(root, checkpoints):
    return root / ("teacher3s" if checkpoints == 3 else f"teacher{checkpoints}")


def run(trained, method, checkpoints, stages, out, cache=None):
    root, config = trained
    cfg = stage_config(config(checkpoints, stages), "synthetic_subdomains", "distill", method)
    summary = distill(cfg, 0, root / "data", teacher_dir(root, checkpoints), root / "student", root / out,
                      teacher_cache=cache)
    summary["mlflow_run_id"] = mlflow_sync.sync(cfg.results_dir)[summary["run_id"]]  # its run record, logged
    losses = [m.value for m in MlflowClient(tracking.tracking_uri(cfg)).get_metric_history(summary["mlflow_run_id"],
                                                                                           "train/loss")]
    return summary, losses


def test_with_one_checkpoint_scd_equals_td_step_by_step(trained):
    td, td_losses = run(trained, "td", 1, 2, "td1")
    scd_, scd_losses = run(trained, "scd", 1, 2, "scd1")
    assert scd_["schedule"] == td["schedule"] == ["best", "best"]
    assert len(td_losses) > 2 and scd_losses == td_losses
    root = trained[0]
    a, b = load_pretrained(root / "td1" / "best").state_dict(), load_pretrained(root / "scd1" / "best").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cd_follows_the_trajectory_and_each_stage_gets_a_fresh_optimizer(trained, monkeypatch):
    created = []

    class Recording(torch.optim.AdamW):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            created.append(len(self.state))  # state entries at the stage boundary

    monkeypatch.setattr(scd.train.torch.optim, "AdamW", Recording)
    summary, _ = run(trained, "cd", 3, 3, "cd3")
    assert summary["schedule"] == ["ckpt-1", "ckpt-2", "best"]
    assert created == [0, 0, 0]
    assert 0 <= summary["best_stage"] < 3
    assert summary["best_val_score"] == max(s["best_val_score"] for s in summary["stages"])


def test_scd_aw_logs_schedule_scores_and_weights(trained):
    summary, losses = run(trained, "scd+aw", 3, 2, "scdaw")
    # the 3-checkpoint trajectory, and at every stage the checkpoint of the lowest score (ties: the earlier one)
    assert summary["checkpoints"] == ["ckpt-1", "ckpt-2", "best"]
    assert len(summary["schedule"]) == len(summary["schedule_scores"]) == 2
    for chosen, scores in zip(summary["schedule"], summary["schedule_scores"]):
        assert list(scores) == summary["checkpoints"]
        assert chosen == min(scores, key=lambda c: scores[c]["score"])
        for terms in scores.values():  # lambda = 1
            assert terms["score"] == pytest.approx(terms["performance"] + terms["learnability"])
    assert all(torch.isfinite(torch.tensor(losses)))
    root, config = trained
    client = MlflowClient(tracking.tracking_uri(common_settings(config(3, 2))))
    run_ = client.get_run(summary["mlflow_run_id"])
    assert 0 < run_.data.metrics["aw/mean"] < 1
    artifacts = {a.path for a in client.list_artifacts(summary["mlflow_run_id"])}
    assert "schedule.json" in artifacts and "aw" in artifacts
    aw = {a.path for a in client.list_artifacts(summary["mlflow_run_id"], "aw")}
    assert {"aw/histogram_stage0.svg", "aw/weights_stage0.json", "aw/histogram_stage1.svg"} <= aw
    # the score matrix: both terms of every checkpoint at every stage, as in the summary
    history = client.get_metric_history(summary["mlflow_run_id"], "schedule/learnability/ckpt-1")
    assert [m.step for m in history] == [0, 1]
    expected = [s["ckpt-1"]["learnability"] for s in summary["schedule_scores"]]
    assert [m.value for m in history] == pytest.approx(expected)
    assert run_.data.metrics["aw/mean/tfs"] > 0 and run_.data.metrics["aw/mean/sfs"] > 0
    hist = summary["aw_histograms"][0]
    assert sum(hist["all"]) == sum(hist["tfs"]) + sum(hist["sfs"]) == 200 + 2 * 50  # every training row once


def test_transfer_set_rows_are_labelled_by_the_selected_teacher(trained):
    root, config = trained
    opts = {**TINY_SYNTHETIC, "n_transfer_tfs": 40, "n_transfer_sfs": 30}
    cfg = load_config("smoke", {"results_dir": str(root), "methods": METHODS, "task_overrides": {
        "synthetic_subdomains": {"task_options": opts,
                                 "training": {"distill": {"epochs": 1, "stages": 1, "batch_size": 32,
                                                          "probe_size": 16}}}}})
    prepare(stage_config(cfg, "synthetic_subdomains", "prepare"), root / "data_t")
    assert (root / "data_t" / "tokenizer" / "tokenizer.json").read_text() == \
        (root / "data" / "tokenizer" / "tokenizer.json").read_text()  # the transfer set leaves the vocabulary alone
    dcfg = stage_config(cfg, "synthetic_subdomains", "distill", "td")
    summary = distill(dcfg, 0, root / "data_t", root / "teacher1", root / "student", root / "td_t")
    assert summary["stages"][0]["transfer_rows"] == 70
    off = distill(stage_config(load_config("smoke", {"results_dir": str(root), "methods": METHODS,
                                                     "task_overrides": {"synthetic_subdomains": {"task_options": opts,
                                                               "training": {"distill": {"epochs": 1, "stages": 1,
                                                                                        "batch_size": 32,
                                                                                        "transfer": False}}}}}),
                               "synthetic_subdomains", "distill", "td"),
                  0, root / "data_t", root / "teacher1", root / "student", root / "td_off")
    assert off["stages"][0]["transfer_rows"] == 0


def test_trajectory_subsets_are_evenly_spaced_and_end_at_best():
    names = [f"ckpt-{i}" for i in range(1, 8)] + ["best"]
    assert evenly_spaced(names, 4) == ["ckpt-2", "ckpt-4", "ckpt-6", "best"]
    assert evenly_spaced(names, 2) == ["ckpt-4", "best"]
    assert evenly_spaced(names, 1) == ["best"]
    assert evenly_spaced(names, 8) == evenly_spaced(names, 20) == names
    with pytest.raises(ValueError):
        evenly_spaced(names, 0)


def test_teacher_outputs_are_the_teachers_logits_and_losses(trained):
    root, config = trained
    prep = Prepared.open(root / "data")
    live = live_teacher(prep, root / "teacher3", torch.device("cpu"))
    cache = open_cache(prep, live)  # no cache directory: computed in memory by the live teacher on first use
    assert live.checkpoints() == ["ckpt-1", "ckpt-2", "best"]
    model = live.load("ckpt-2")
    rows = [7, 3, 150, 42]  # any order, as a shuffled batch has them
    batch = collate([cache.train_rows[i] for i in rows], prep.tokenizer.pad_token_id) | {"index": torch.tensor(rows)}
    mask = response_mask(batch["labels"])
    with torch.no_grad():
        reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    cached = cache.logits("ckpt-2", batch)
    assert torch.allclose(cached[mask], reference[..., :cached.shape[-1]][mask], atol=1e-5)
    assert torch.all(cached[~mask] == 0)
    forward, _ = live.forward("ckpt-2", batch)  # the live teacher on the same batch: the same logits everywhere
    assert torch.allclose(forward, reference[..., :forward.shape[-1]], atol=1e-5)
    probe = [3, 7, 42]
    assert torch.allclose(cache.probe_logits("ckpt-1", probe), cache.rows_logits("ckpt-1", probe), atol=1e-5)
    losses = cache.gold_losses("ckpt-2")
    expected = gold_nll(model, cache.train_rows, prep.tokenizer.pad_token_id, 64, torch.device("cpu"))
    assert torch.allclose(losses, torch.tensor(expected), atol=1e-5)


def test_a_cache_reads_a_directory_or_computes_with_a_live_teacher_never_both(trained, tmp_path):
    root, _ = trained
    prep = Prepared.open(root / "data")
    live = live_teacher(prep, root / "teacher1", torch.device("cpu"))
    rows = prep.encoded("train")
    with pytest.raises(ValueError, match="one of the two"):
        TeacherCache(rows, [], live.vocab_size)
    with pytest.raises(ValueError, match="one of the two"):
        TeacherCache(rows, [], live.vocab_size, cache_dir=tmp_path, live=live)
    assert isinstance(open_cache(prep, live, cache_dir=tmp_path), TeacherCache)


def test_cached_teacher_outputs_train_exactly_like_in_memory_ones(trained):
    root, config = trained
    cfg = stage_config(config(3, 2), "synthetic_subdomains", "teacher_outputs")
    manifest = write_teacher_outputs(cfg, 0, root / "data", teacher_dir(root, 3), root / "cache3")
    assert set(manifest["checkpoints"]) == {"ckpt-1", "ckpt-2", "best"}
    assert all(c["checkpoint_bytes"] > 0 and c["cache_bytes"] > 0 for c in manifest["checkpoints"].values())
    saved = CheckpointOutputs.load(root / "cache3" / "ckpt-1.safetensors")
    assert saved.train_logits.dtype == torch.float32
    live, live_losses = run(trained, "scd+aw", 3, 2, "live")
    cached, cached_losses = run(trained, "scd+aw", 3, 2, "cached", cache=root / "cache3")
    assert live["schedule"] == cached["schedule"] and live_losses == cached_losses


def test_teacher_outputs_cover_only_the_checkpoints_the_trajectories_read(trained, tmp_path):
    root, config = trained
    job = dataclasses.replace(stage_config(config(3, 2), "synthetic_subdomains", "teacher_outputs"), trajectories=[2])
    manifest = write_teacher_outputs(job, 0, root / "data", root / "teacher3", tmp_path / "c")
    assert list(manifest["checkpoints"]) == ["ckpt-2", "best"]
    assert sorted(p.stem for p in (tmp_path / "c").glob("*.safetensors")) == ["best", "ckpt-2"]
    prep = Prepared.open(root / "data")
    cache = TeacherCache.on_disk(tmp_path / "c", prep.encoded("train"), transfer_prompts(prep),
                                 live_teacher(prep, root / "teacher3", torch.device("cpu")).vocab_size)
    assert cache.outputs("ckpt-2").train_logits.shape[0] > 0
    with pytest.raises(FileNotFoundError, match="it holds best, ckpt-2"):
        cache.outputs("ckpt-1")


def test_stale_or_missing_cache_is_refused(trained, tmp_path):
    root, config = trained
    with pytest.raises(FileNotFoundError, match="scd teacher-outputs"):
        run(trained, "td", 3, 1, "nocache", cache=tmp_path)
    write_teacher_outputs(stage_config(config(1, 1), "synthetic_subdomains", "teacher_outputs"), 0, root / "data",
                          root / "teacher1", tmp_path / "c")
    bad = CheckpointOutputs.load(tmp_path / "c" / "best.safetensors")
    CheckpointOutputs(bad.train_logits[:-1], [], bad.transfer_logits, bad.train_hidden[:-1],
                      bad.transfer_hidden).save(tmp_path / "c" / "best.safetensors")
    with pytest.raises(ValueError, match="stale"):
        run(trained, "td", 1, 1, "stale", cache=tmp_path / "c")


def test_student_starts_from_student_sft_or_from_the_base_student(trained):
    root, config = trained
    prep = Prepared.open(root / "data")
    cfg = stage_config(config(1, 1), "synthetic_subdomains", "distill", "td")
    assert cfg.student is None  # the default start needs no model spec: the job's params stay as they were
    assert cfg.training.init == "student_sft"
    sft_start = initial_student(prep, root / "student", 0).state_dict()
    saved = load_pretrained(root / "student" / "best").state_dict()
    assert all(torch.equal(sft_start[k], saved[k]) for k in saved)
    base_cfg = load_config("smoke", {"results_dir": str(root), "methods": METHODS, "task_overrides": {
        "synthetic_subdomains": {"task_options": TINY_SYNTHETIC, "training": {"distill": {"init": "base"}}}}})
    cfg = stage_config(base_cfg, "synthetic_subdomains", "distill", "td")
    assert cfg.training.init == "base" and cfg.student == base_cfg["models"]["student"]
    base = initial_student(prep, root / "student", 0, cfg.training.init, cfg.student).state_dict()
    fresh = build_model(cfg.student, prep.tokenizer, prep.task.max_length, 0).state_dict()
    assert all(torch.equal(base[k], fresh[k]) for k in fresh)
    assert not all(torch.equal(base[k], saved[k]) for k in saved)


def test_each_probe_source_draws_its_rows_from_its_split(trained, tmp_path):
    root, config = trained
    prep = Prepared.open(root / "data")
    live = live_teacher(prep, root / "teacher3", torch.device("cpu"))
    cache = open_cache(prep, live)
    pad, vocab = prep.tokenizer.pad_token_id, len(prep.tokenizer)
    train = probe_set("train", prep, cache, live, 16, 0, "where")
    assert train.indices == ProbeSet.sample(cache.train_rows, 16, 0, pad, vocab).indices  # today's probe
    assert train.rows == [cache.train_rows[i] for i in train.indices]
    assert train.groups == [prep.rows("train")[i]["subdomain"] for i in train.indices]
    val = probe_set("validation", prep, cache, live, 16, 0, "where")
    validation = prep.encoded("validation")
    assert val.source == "validation" and len(val.rows) == 16 and max(val.indices) < len(validation)
    assert val.rows == [validation[i] for i in val.indices]
    assert val.groups == [prep.rows("validation")[i]["subdomain"] for i in val.indices]
    # validation rows are not in the teacher-output cache: their distributions are the checkpoint's own forward
    ctx = StageContext(["ckpt-1", "best"], cache, None, cache.train_rows, pad, probe=val, live=live)
    expected = torch.log_softmax(response_logits(live.load("ckpt-1"), val.rows, pad, vocab, 64, "cpu"), -1)
    assert torch.allclose(ctx.teacher_logprobs("ckpt-1"), expected, atol=1e-5)
    with pytest.raises(ValueError, match="methods.x.schedule_options.probe_source is 'transfer' but task "
                                         "'synthetic_subdomains' has no transfer set"):
        probe_set("transfer", prep, cache, live, 16, 0, "methods.x.schedule_options.probe_source")
    # a task with a transfer set: its prompts, with T*'s greedy responses as the compared tokens
    cfg = load_config("smoke", {"results_dir": str(tmp_path), "task_overrides": {"synthetic_subdomains": {
        "task_options": {**TINY_SYNTHETIC, "n_transfer_tfs": 12, "n_transfer_sfs": 8}}}})
    prepare(stage_config(cfg, "synthetic_subdomains", "prepare"), tmp_path / "data_t")
    prep_t = Prepared.open(tmp_path / "data_t")
    cache_t = open_cache(prep_t, live)
    transfer = probe_set("transfer", prep_t, cache_t, live, 16, 0, "where")
    prompts = transfer_prompts(prep_t)
    assert transfer.source == "transfer" and len(transfer.rows) == 16 and max(transfer.indices) < len(prompts) == 20
    assert [r.prompt_ids for r in transfer.rows] == [prompts[i].prompt_ids for i in transfer.indices]
    labelled_by_best = cache_t.transfer_rows("best")
    assert [r.answer_ids for r in transfer.rows] == [labelled_by_best[i].answer_ids for i in transfer.indices]
    assert not any(r.labelled for r in transfer.rows)
    assert transfer.groups == [prep_t.rows("transfer")[i]["subdomain"] for i in transfer.indices]
    # on those tokens T*'s distribution is the one its cached outputs hold for the same rows
    ctx = StageContext(["best"], cache_t, None, cache_t.train_rows, pad, probe=transfer, live=live)
    n_train = len(cache_t.train_rows)
    cached = torch.log_softmax(cache_t.rows_logits("best", [n_train + i for i in transfer.indices]), -1)
    assert torch.allclose(ctx.teacher_logprobs("best"), cached, atol=1e-4)


def test_scd_on_a_validation_probe_with_normalized_terms_logs_both_terms_per_subdomain(trained):
    summary, _ = run(trained, "scd-val", 3, 2, "scdval")
    probe = summary["probe"]
    assert probe["source"] == "validation" and probe["rows"] == 32 and max(probe["indices"]) < 40
    tokens = probe["subdomain_tokens"]
    assert set(tokens) == {"tfs", "sfs"} and sum(tokens.values()) == probe["tokens"]
    assert len(summary["schedule_scores"]) == 2
    for chosen, scores in zip(summary["schedule"], summary["schedule_scores"]):
        assert chosen == min(scores, key=lambda c: scores[c]["score"])
        for terms in scores.values():
            assert terms["score"] == pytest.approx(terms["performance_normalized"] + terms["learnability_normalized"])
            for t in ("performance", "learnability"):
                parts = terms["subdomains"]
                assert sum(tokens[g] * parts[g][t] for g in tokens) / probe["tokens"] == pytest.approx(terms[t],
                                                                                                        rel=1e-4)
    root, config = trained
    client = MlflowClient(tracking.tracking_uri(common_settings(config(3, 2))))
    history = client.get_metric_history(summary["mlflow_run_id"], "schedule/subdomain/sfs/learnability/ckpt-1")
    assert [m.step for m in history] == [0, 1]
    expected = [s["ckpt-1"]["subdomains"]["sfs"]["learnability"] for s in summary["schedule_scores"]]
    assert [m.value for m in history] == pytest.approx(expected)
    assert client.get_metric_history(summary["mlflow_run_id"], "schedule/performance_normalized/best")


def test_a_trajectory_with_t_star_duplicating_a_checkpoint_is_recorded_or_stops_the_job(trained, tmp_path):
    root, config = trained
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dir(root, 3), teacher)
    saved = json.loads((teacher / "summary.json").read_text())
    (teacher / "summary.json").write_text(json.dumps(saved | {"best_step": saved["checkpoints"]["ckpt-2"]}))
    lax = stage_config(config(3, 2), "synthetic_subdomains", "distill", "cd")
    cfg = dataclasses.replace(lax, training=dataclasses.replace(lax.training, check_trajectory=True))  # strict
    with pytest.raises(TrajectoryError, match=r"teacher trajectory ckpt-1, ckpt-2, best is not distinct: 'best' is "
                                              r"the same weights as 'ckpt-2' \(both step 20, per .*summary.json\)"):
        distill(cfg, 0, root / "data", teacher, root / "student", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (teacher / "summary.json").write_text(json.dumps(saved | {"best_step": 15}))  # T* between ckpt-1 and ckpt-2
    with pytest.raises(TrajectoryError, match=r"not in training order: 'best' \(step 15\) comes before 'ckpt-2'"):
        distill(cfg, 0, root / "data", teacher, root / "student", tmp_path / "out")
    td = stage_config(config(3, 1), "synthetic_subdomains", "distill", "td")  # TD reads T* alone: not checked
    assert distill(td, 0, root / "data", teacher, root / "student", tmp_path / "td")["trajectory_problem"] is None
    # by default the job goes on and records the problem in its summary
    lax = dataclasses.replace(lax, training=dataclasses.replace(lax.training, epochs=1, stages=1))
    summary = distill(lax, 0, root / "data", teacher, root / "student", tmp_path / "lax")
    assert "not in training order" in summary["trajectory_problem"]
    assert summary["trajectory_steps"] == {"ckpt-1": 10, "ckpt-2": 20, "best": 15}
    (teacher / "summary.json").unlink()  # no steps recorded: the weights themselves are compared
    shutil.rmtree(teacher / "best")
    shutil.copytree(teacher / "checkpoints" / "ckpt-1", teacher / "best")
    with pytest.raises(TrajectoryError, match="'best' holds the same weights as 'ckpt-1'"):
        distill(cfg, 0, root / "data", teacher, root / "student", tmp_path / "out")
