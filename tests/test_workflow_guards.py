"""Guards of the workflow against misuse: a profile that must survive other --config keys, paths with spaces,
results missing from the leaderboard."""
import re

import pytest
from conftest import dry_run, job_stats

from scd.config import enabled_methods, enabled_tasks, load_config


def _start_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("scd-bench: profile ")]
    assert len(lines) == 1, out[-3000:]
    return lines[0]


# --- the workflow profile survives other --config keys ------------------------------------------------------------

def test_smoke_profile_survives_other_config_keys(tmp_path, shared_data):
    code, out = dry_run(tmp_path, "--config", "seeds=[0]", data=str(shared_data))
    assert code == 0, out[-3000:]
    cfg = load_config("smoke", {"seeds": [0]})
    tasks, methods = enabled_tasks(cfg), enabled_methods(cfg)
    line = _start_line(out)
    assert line.startswith("scd-bench: profile smoke (config/smoke.yaml; workflow profile profiles/smoke)")
    assert f"methods [{', '.join(methods)}], seeds [0]," in line and line.endswith("results/smoke")
    stats = job_stats(out)
    assert stats["prepare"] == len(tasks) and stats["sft"] == 2 * len(tasks)
    assert stats["distill"] == len(tasks) * len(methods)


def test_profile_config_entries_survive_and_command_line_wins(tmp_path, shared_data):
    # paper-lora sets profile, results_dir and the models' LoRA in its `config:` entries
    code, out = dry_run(tmp_path, "--config", "seeds=[0]", profile="paper-lora", data=str(shared_data))
    assert code == 0, out[-3000:]
    line = _start_line(out)
    assert "profile paper (config/paper.yaml; workflow profile profiles/paper-lora)" in line
    assert line.endswith("results/paper_lora")
    code, out = dry_run(tmp_path, "--config", "profile=default", "seeds=[0]", data=str(shared_data))
    assert code == 0 and "scd-bench: profile default (config/default.yaml" in out


def test_profile_configfile_survives_a_command_line_configfile(tmp_path, shared_data):
    # profiles/ablations names config/ablations.yaml as its configfile; another --configfile must not drop it
    extra = tmp_path / "extra.yaml"
    extra.write_text("seeds: [0]\n")
    code, out = dry_run(tmp_path, "--configfile", str(extra), profile="ablations", data=str(shared_data))
    assert code == 0, out[-3000:]
    assert "scd-bench: profile default (config/default.yaml; workflow profile profiles/ablations)" in out
    assert re.search(r"distill/scd\+aw\.n8", out)



# --- a malformed JSON-lines file: named with its line, and the remedy that rewrites it ------------------------------

def test_a_malformed_prepared_split_says_prepare_again(tmp_path):
    from scd.data import read_jsonl

    split = tmp_path / "train.jsonl"
    split.write_text('{"id": 0}\n{"id": 1, "pro')
    with pytest.raises(ValueError, match=r"train.jsonl:2: malformed JSON line \(.*\): re-run `scd prepare`"):
        read_jsonl(split)
    with pytest.raises(ValueError, match=r"train.jsonl:2: malformed JSON line \(.*\): do this$"):
        read_jsonl(split, remedy="do this")
