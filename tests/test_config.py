"""Configuration errors name the offending key or value; stage configs isolate what each job reads."""
import json

import pytest

from scd.config import ConfigError, load_config, stage_config


def test_default_and_smoke_profiles_are_valid():
    for profile in ("default", "smoke", "gpu"):
        cfg = load_config(profile)
        assert cfg["profile"] == profile


def test_misspelt_key_is_named_with_suggestion():
    with pytest.raises(ConfigError, match=r"'sedes'.*Did you mean 'seeds'"):
        load_config("default", {"sedes": [0]})


def test_nested_misspelt_key_names_its_path():
    with pytest.raises(ConfigError, match=r"'epoch'.*training.teacher.*Did you mean 'epochs'"):
        load_config("default", {"training": {"teacher": {"epoch": 3}}})


def test_wrong_value_names_path_and_problem():
    with pytest.raises(ConfigError, match=r"training.student.lr.*'fast' is not of type 'number'"):
        load_config("default", {"training": {"student": {"lr": "fast"}}})
    with pytest.raises(ConfigError, match=r"seeds.*should be non-empty|seeds.*too short"):
        load_config("default", {"seeds": []})
    with pytest.raises(ConfigError, match=r"device"):
        load_config("default", {"device": "tpu"})


def test_unknown_task_and_method_parts_are_named():
    with pytest.raises(ConfigError, match=r"tasks.pubmed_qa: unknown task 'pubmed_qa'. Did you mean 'pubmedqa'"):
        load_config("default", {"tasks": {"pubmed_qa": {}}})
    with pytest.raises(ConfigError, match=r"methods.td2: unknown divergence 'fk'.*Did you mean 'fkl'"):
        load_config("default", {"methods": {"td2": {"schedule": "best", "divergence": "fk", "weighting": "none"}}})
    with pytest.raises(ConfigError, match=r"methods.teacher_sft: .*leaderboard row"):
        load_config("default", {"methods": {"teacher_sft": {"schedule": "best", "divergence": "fkl",
                                                            "weighting": "none"}}})


def test_unknown_profile_is_reported():
    with pytest.raises(ConfigError, match=r"no config overlay for profile 'smok'.*Did you mean 'smoke'"):
        load_config("smok")


def test_task_options_are_checked():
    with pytest.raises(ConfigError, match=r"no option 'noise'.*Did you mean 'sfs_noise'"):
        load_config("default", {"tasks": {"synthetic_subdomains": {"task_options": {"noise": 0.1}}}})


def test_stage_config_ignores_what_the_stage_does_not_read():
    cfg = load_config("default")
    more = load_config("default", {"methods": {"td_t2": {"schedule": "best", "divergence": "fkl",
                                                         "weighting": "none", "temperature": 2.0}}})
    for stage, name in (("prepare", None), ("sft", "teacher"), ("sft", "student"), ("evaluate", None)):
        assert json.dumps(stage_config(cfg, "pubmedqa", stage, name)) == json.dumps(stage_config(more, "pubmedqa", stage, name))
    # task overrides apply to their task only
    assert stage_config(cfg, "pubmedqa", "sft", "teacher")["training"]["teacher"]["epochs"] == 8
    assert stage_config(cfg, "synthetic_subdomains", "sft", "teacher")["training"]["teacher"]["epochs"] == 25
    # the student's job does not see the teacher's settings
    assert "teacher" not in stage_config(cfg, "pubmedqa", "sft", "student")["training"]


def test_task_option_types_are_checked():
    with pytest.raises(ConfigError, match=r"option 'sfs_noise' must be of type float.*got '0.4'"):
        load_config("default", {"tasks": {"synthetic_subdomains": {"task_options": {"sfs_noise": "0.4"}}}})
    with pytest.raises(ConfigError, match=r"option 'flip_per_copy' must be of type bool"):
        load_config("default", {"tasks": {"synthetic_subdomains": {"task_options": {"flip_per_copy": 1}}}})
    load_config("default", {"tasks": {"synthetic_subdomains": {"task_options": {"sfs_noise": 0}}}})
