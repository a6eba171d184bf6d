"""The distillation stage end to end on a tiny synthetic task: TD/CD/SCD/AW runs, staged training details."""
import pytest
import torch
from mlflow.tracking import MlflowClient

import scd.train
from scd import tracking
from scd.config import load_config, stage_config
from scd.distill.run import distill
from scd.models import load_pretrained
from scd.prepare import prepare
from scd.sft import sft

TINY = {"n_tfs_train": 200, "n_tfs_test": 50, "n_sfs_train": 50, "n_sfs_test": 50, "n_val": 40}
METHODS = {
    "td": {"schedule": "best", "divergence": "fkl", "weighting": "none"},
    "cd": {"schedule": "fixed_order", "divergence": "fkl", "weighting": "none"},
    "scd": {"schedule": "scd", "divergence": "fkl", "weighting": "none"},
    "scd+aw": {"schedule": "scd", "divergence": "fkl", "weighting": "aw"},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")

    def config(checkpoints, stages):
        return load_config("smoke", {"results_dir": str(root), "checkpoints": checkpoints, "methods": METHODS,
                                     "tasks": {"synthetic_subdomains": {"task_options": TINY, "training": {
                                         "teacher": {"epochs": 3, "batch_size": 32},
                                         "distill": {"epochs": stages, "stages": stages, "batch_size": 32,
                                                     "probe_size": 32}}}}})

    base = config(1, 1)
    prepare(stage_config(base, "synthetic_subdomains", "prepare"), root / "data")
    for n in (1, 3):
        sft(stage_config(config(n, 1), "synthetic_subdomains", "sft", "teacher"), "teacher", 0, root / "data",
            root / f"teacher{n}")
    sft(stage_config(base, "synthetic_subdomains", "sft", "student"), "student", 0, root / "data", root / "student")
    return root, config


def run(trained, method, checkpoints, stages, out):
    root, config = trained
    cfg = stage_config(config(checkpoints, stages), "synthetic_subdomains", "distill", method)
    summary = distill(cfg, method, 0, root / "data", root / f"teacher{checkpoints}", root / "student", root / out)
    losses = [m.value for m in MlflowClient(tracking.tracking_uri(cfg)).get_metric_history(summary["run_id"],
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
    assert all(c in ("ckpt-1", "ckpt-2", "best") for c in summary["schedule"])
    assert all(torch.isfinite(torch.tensor(losses)))
    root, config = trained
    client = MlflowClient(tracking.tracking_uri(config(3, 2)))
    run_ = client.get_run(summary["run_id"])
    assert 0 < run_.data.metrics["aw/mean"] < 1
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"])}
    assert "schedule.json" in artifacts and "aw" in artifacts


def test_transfer_set_rows_are_labelled_by_the_selected_teacher(trained):
    root, config = trained
    opts = {**TINY, "n_transfer_tfs": 40, "n_transfer_sfs": 30}
    cfg = load_config("smoke", {"results_dir": str(root), "checkpoints": 1, "methods": METHODS, "tasks": {
        "synthetic_subdomains": {"task_options": opts,
                                 "training": {"distill": {"epochs": 1, "batch_size": 32, "probe_size": 16}}}}})
    prepare(stage_config(cfg, "synthetic_subdomains", "prepare"), root / "data_t")
    assert (root / "data_t" / "tokenizer" / "tokenizer.json").read_text() == \
        (root / "data" / "tokenizer" / "tokenizer.json").read_text()  # the transfer set leaves the vocabulary alone
    dcfg = stage_config(cfg, "synthetic_subdomains", "distill", "td")
    summary = distill(dcfg, "td", 0, root / "data_t", root / "teacher1", root / "student", root / "td_t")
    assert summary["stages"][0]["transfer_rows"] == 70
    off = distill(stage_config(load_config("smoke", {"results_dir": str(root), "checkpoints": 1, "methods": METHODS,
                                                     "tasks": {"synthetic_subdomains": {"task_options": opts,
                                                               "training": {"distill": {"epochs": 1, "batch_size": 32,
                                                                                        "transfer": False}}}}}),
                               "synthetic_subdomains", "distill", "td"),
                  "td", 0, root / "data_t", root / "teacher1", root / "student", root / "td_off")
    assert off["stages"][0]["transfer_rows"] == 0
