"""Configuration errors name the offending key or value; stage configs isolate what each job reads."""
import subprocess
import sys
from pathlib import Path

import pytest

from scd.config import (
    CONFIG_DIR,
    ConfigError,
    ablation_plan,
    distilled_methods,
    enabled_methods,
    enabled_tasks,
    load_config,
    oracle_plan,
    oracle_rows,
    read_yaml,
    stage_config,
    teacher_cache_checkpoints,
)
from scd.config import _overlay as overlay_of
from scd.dicts import flatten
from scd.distill.checks import divergences
from scd.distill.methods import resolve_spec
from scd.distill.parts import RESPONSES
from scd.distill.trajectory import checkpoint_names, evenly_spaced, used_checkpoints
from scd.settings import DistillJob, SettingsError, job_from_json, to_json
from tasks import get_task

REPO = Path(__file__).resolve().parents[1]


def test_every_profile_overlay_is_valid_and_applied():
    base = flatten(read_yaml(CONFIG_DIR / "config.yaml"))
    profiles = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "config")
    assert {"default", "smoke", "paper", "smollm2", "ablations"} <= set(profiles)
    for profile in profiles:
        cfg = load_config(profile)
        got = flatten({k: v for k, v in cfg.items() if k not in ("profile", "tasks")})
        got["tasks"] = cfg["task_selection"]
        overlay = flatten(overlay_of(profile))  # the profile's file over the profile it extends
        for key, value in overlay.items():  # every setting of the overlay reaches the config ...
            assert got.get(key, "<missing>") == value, (profile, key)
        for key, value in base.items():  # ... and every default it does not replace stays
            replaced = any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k in overlay)
            if key != "profile" and not replaced:
                assert got.get(key, "<missing>") == value, (profile, key)
        assert cfg["tasks"] and all(get_task(t).name == t for t in cfg["tasks"])  # groups expanded to task names


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
    with pytest.raises(ConfigError, match=r"tasks: unknown task or group 'pubmed_qa'. Did you mean 'pubmedqa'"):
        load_config("default", {"tasks": ["pubmed_qa"]})
    with pytest.raises(ConfigError, match=r"unknown task or group 'papr'. Did you mean 'paper'"):
        load_config("default", {"tasks": ["synthetic", "papr"]})
    with pytest.raises(ConfigError, match=r"task_overrides.jmed: not a task or group name. Did you mean 'jmed_llm'"):
        load_config("default", {"task_overrides": {"jmed": {"tokenizer": {"vocab_size": 100}}}})
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
        load_config("default", {"task_overrides": {"synthetic_subdomains": {"task_options": {"noise": 0.1}}}})


def test_stage_config_ignores_what_the_stage_does_not_read():
    cfg = load_config("default")
    more = load_config("default", {"methods": {"td_t2": {"schedule": "best", "divergence": "fkl",
                                                         "weighting": "none", "temperature": 2.0}}})
    for stage, name in (("prepare", None), ("sft", "teacher"), ("sft", "student"), ("teacher_outputs", None),
                        ("evaluate", None)):
        assert to_json(stage_config(cfg, "pubmedqa", stage, name)) == \
            to_json(stage_config(more, "pubmedqa", stage, name))
    # a key a stage reads does change its params
    slower = load_config("default", {"training": {"teacher": {"lr": 5e-4}}})
    assert to_json(stage_config(cfg, "pubmedqa", "sft", "teacher")) != \
        to_json(stage_config(slower, "pubmedqa", "sft", "teacher"))
    assert to_json(stage_config(cfg, "pubmedqa", "sft", "student")) == \
        to_json(stage_config(slower, "pubmedqa", "sft", "student"))
    # task overrides apply to their task only
    assert stage_config(cfg, "pubmedqa", "sft", "teacher").training.epochs == 8
    assert stage_config(cfg, "synthetic_subdomains", "sft", "teacher").training.epochs == 25
    # the student's job does not see the teacher's settings, nor saves a trajectory
    student = stage_config(cfg, "pubmedqa", "sft", "student")
    assert student.role == "student" and student.save_checkpoints == 0
    assert stage_config(cfg, "pubmedqa", "sft", "teacher").save_checkpoints == 8


def test_task_option_types_are_checked():
    with pytest.raises(ConfigError, match=r"option 'sfs_noise' must be of type float.*got '0.4'"):
        load_config("default", {"task_overrides": {"synthetic_subdomains": {"task_options": {"sfs_noise": "0.4"}}}})
    with pytest.raises(ConfigError, match=r"option 'flip_per_copy' must be of type bool"):
        load_config("default", {"task_overrides": {"synthetic_subdomains": {"task_options": {"flip_per_copy": 1}}}})
    load_config("default", {"task_overrides": {"synthetic_subdomains": {"task_options": {"sfs_noise": 0}}}})


def own(registry) -> set[str]:
    """The names in a registry that this repository's own modules (scd, baselines) registered."""
    return {n for n, obj in registry.items() if obj.__module__.split(".")[0] in ("scd", "baselines")}


def test_default_leaderboard_has_the_factorial_and_the_baseline_zoo():
    cfg = load_config("default")
    specs = {m: resolve_spec(m, cfg["methods"][m]) for m in enabled_methods(cfg)}
    fkl = {m: (s["schedule"], s["weighting"]) for m, s in specs.items() if s["divergence"] == "fkl"}
    # the schedule x weighting factorial over one divergence: only the schedule and weighting differ
    assert sorted(fkl.values()) == sorted((s, w) for s in ("best", "fixed_order", "scd") for w in ("none", "aw"))
    # every baseline of the zoo, each from T* with no weighting: what differs from TD is its loss or responses
    zoo = {m: s for m, s in specs.items() if m not in fkl}
    # ... every divergence and response source this repository registers (core and baselines/, not other plugins)
    assert {s["divergence"] for s in zoo.values()} | {"fkl"} == own(divergences())
    assert {s["responses"] for s in zoo.values()} == own(RESPONSES)
    assert all(s["schedule"] == "best" and s["weighting"] == "none" for s in zoo.values())


def test_ablations_expand_into_variant_methods_and_reuse_identical_ones():
    abl = read_yaml(CONFIG_DIR / "ablations.yaml")
    cfg = load_config("default", abl)
    plan = ablation_plan(cfg)
    assert plan["tasks"] == ["synthetic_subdomains"]
    # the main methods run N = 4 of the 8 saved checkpoints in 4 stages, and SCD's lambda defaults to 1
    assert plan["axes"]["granularity"]["scd+aw"] == {1: "scd+aw.n1", 2: "scd+aw.n2", 4: "scd+aw", 8: "scd+aw.n8"}
    assert plan["axes"]["lam"]["scd+aw"] == {0: "scd+aw.lam0", 0.5: "scd+aw.lam0.5", 1: "scd+aw", 2: "scd+aw.lam2"}
    # a variant is its base, resolved (defaults and preset filled in), with the axis's keys changed
    assert plan["variants"]["cd.n8"] == resolve_spec("cd", cfg["methods"]["cd"]) | {"trajectory": 8, "stages": 8}
    assert plan["variants"]["cd.n8"]["responses"] == "gold"
    assert plan["variants"]["scd+aw.lam0.5"]["schedule_options"] == {"lam": 0.5}
    with_variants = load_config("default", abl | {"methods": plan["variants"]})  # as the Snakefile adds them
    assert stage_config(with_variants, "synthetic_subdomains", "distill", "cd.n8").trajectory == 8
    assert ablation_plan(load_config("default")) == {"tasks": [], "variants": {}, "axes": {}}
    # the variants' jobs see their own spec only: the main methods' jobs are untouched by the ablations
    assert stage_config(cfg, "synthetic_subdomains", "distill", "cd") == \
        stage_config(load_config("default"), "synthetic_subdomains", "distill", "cd")


def test_ablation_of_an_unknown_method_or_task_is_named():
    with pytest.raises(ConfigError, match=r"ablations.lam.methods: 'scd\+w' .*Did you mean 'scd\+aw'"):
        ablation_plan(load_config("default", {"ablations": {"lam": {"methods": ["scd+w"], "values": [0]}}}))
    with pytest.raises(ConfigError, match=r"ablations.tasks: 'pubmed' .*Did you mean 'pubmedqa'"):
        ablation_plan(load_config("default", {"ablations": {"tasks": ["pubmed"]}}))
    with pytest.raises(ConfigError, match=r"ablations.lam.values.*-1"):
        load_config("default", {"ablations": {"lam": {"methods": ["scd"], "values": [-1]}}})


def test_profiles_name_the_methods_they_run():
    cfg = load_config("smoke")
    assert enabled_methods(cfg) == cfg["run_methods"] == ["td", "scd+aw"]
    assert "cd" in cfg["methods"] and "cd" not in enabled_methods(cfg)  # defined, not run
    # a method added to the shared definitions runs in no profile that does not name it
    more = load_config("smoke", {"methods": {"new_kd": {"divergence": "rkl"}}})
    assert enabled_methods(more) == ["td", "scd+aw"]
    # a preset runs under its own name without an entry; an unknown name is refused with a suggestion
    assert enabled_methods(load_config("smoke", {"run_methods": ["td", "seqkd"]})) == ["td", "seqkd"]
    with pytest.raises(ConfigError, match=r"run_methods: 'scd\+ew'.*Did you mean 'scd\+aw'"):
        load_config("smoke", {"run_methods": ["scd+ew"]})


def test_job_settings_are_typed_and_refuse_what_they_do_not_know():
    job = stage_config(load_config("smoke"), "pubmedqa", "distill", "scd+aw")
    assert isinstance(job, DistillJob) and job.spec.schedule == "scd" and job.spec.weighting == "aw"
    assert job_from_json("distill", to_json(job)) == job  # what the Snakefile passes is what the job reads
    with pytest.raises(SettingsError, match=r"distill.training: unknown key\(s\) 'epoch'.*Did you mean 'epochs'"):
        job_from_json("distill", to_json(job).replace('"epochs"', '"epoch"'))
    with pytest.raises(SettingsError, match=r"distill.training.batch_size: expected int"):
        job_from_json("distill", to_json(job).replace('"batch_size": 16', '"batch_size": "16"'))
    with pytest.raises(ConfigError, match=r"overrides say `extends: smoke` but the profile is 'paper'"):
        load_config("paper", {"extends": "smoke"})


def test_a_job_builds_its_method_from_its_settings_alone():
    """A distillation job's process reads its settings JSON and nothing else: the parts its spec names (a baseline's
    divergence included) must be found without any earlier registry lookup in that process."""
    job = stage_config(load_config("smoke"), "pubmedqa", "distill", "scd+aw")
    code = ("import sys; from scd.settings import job_from_json; from scd.distill.methods import method_from_config;"
            " j = job_from_json('distill', sys.argv[1]); m = method_from_config(j.method, j.spec);"
            " print(m.divergence.__module__, type(m.schedule).__name__)")
    r = subprocess.run([sys.executable, "-c", code, to_json(job)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["baselines.kd", "ScheduledCheckpoint"]


def test_command_line_values_are_read_as_yaml_scalars_but_yes_stays_a_string():
    from scd.config import from_command_line

    assert from_command_line({"seeds": ["0", "1"], "x": "true", "y": "2.5", "z": "null", "w": "abc"}) == \
        {"seeds": [0, 1], "x": True, "y": 2.5, "z": None, "w": "abc"}
    assert from_command_line({"allow_modified_data": "yes", "a": "off"}) == {"allow_modified_data": "yes", "a": "off"}


@pytest.mark.parametrize("profile", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "config"))
def test_the_teacher_output_cache_holds_exactly_the_checkpoints_some_distillation_reads(profile):
    cfg = load_config(profile)
    plan = ablation_plan(cfg)
    cfg["methods"].update(plan["variants"] | oracle_plan(cfg)["variants"])  # as the Snakefile does
    for task in enabled_tasks(cfg):
        saved = stage_config(cfg, task, "sft", "teacher").save_checkpoints
        names = [f"ckpt-{k}" for k in range(1, saved)] + ["best"]
        read = set()
        for method in distilled_methods(cfg, task):
            job = stage_config(cfg, task, "distill", method)
            read |= set(names if job.trajectory is None or job.trajectory >= len(names)
                        else [names[round((k + 1) * len(names) / job.trajectory) - 1] for k in range(job.trajectory)])
            if job.spec.schedule == "fixed":  # an oracle row reads one checkpoint of its trajectory: cached too
                trajectory = [n for n in names if n in read]
                assert job.spec.schedule_options["checkpoint"] <= len(trajectory), (profile, task, method)
        cached = teacher_cache_checkpoints(cfg, task)
        assert set(cached) == read and cached == [n for n in names if n in read], (profile, task)
        job = stage_config(cfg, task, "teacher_outputs")
        assert used_checkpoints(names, job.trajectories) == cached


def test_smollm2_plans_three_seeds_and_four_distinct_checkpoints_in_four_stages_with_oracle_rows():
    cfg = load_config("smollm2")
    cfg = load_config("smollm2", {"methods": oracle_plan(cfg)["variants"]})  # the oracle rows, as the Snakefile adds
    assert len(set(cfg["seeds"])) >= 3
    for task in enabled_tasks(cfg):
        teacher = stage_config(cfg, task, "sft", "teacher")
        names = checkpoint_names(teacher.save_checkpoints)
        # validated once, at the end of its one epoch: T* is the last step, after every checkpoint saved before it,
        # so the trajectory's checkpoints are distinct models in training order
        assert teacher.training.epochs == 1
        for method in distilled_methods(cfg, task):
            job = stage_config(cfg, task, "distill", method)
            trajectory = evenly_spaced(names, job.trajectory)
            assert len(set(trajectory)) == len(trajectory) >= 4 and trajectory[-1] == "best", (task, method)
            assert job.stages >= 4, (task, method)
        n = stage_config(cfg, task, "distill", "cd").trajectory
        assert oracle_rows(cfg, task) == [f"cd.ckpt{k}" for k in range(1, n)] + ["cd.reversed"]


def test_oracle_rows_are_planned_per_task_beside_cd_and_reuse_td_for_t_star():
    # smollm2: on every task, one row per checkpoint of its trajectory, the last being TD's runs
    cfg = load_config("smollm2")
    plan = oracle_plan(cfg)
    assert set(plan["tasks"]) == set(enabled_tasks(cfg))
    for task in enabled_tasks(cfg):
        n = stage_config(cfg, task, "distill", "cd").trajectory
        assert plan["tasks"][task] == {"cd": {"fixed": [f"cd.ckpt{k}" for k in range(1, n)] + ["td"],
                                              "reversed": "cd.reversed"}}
        assert distilled_methods(cfg, task)[-n:] == [f"cd.ckpt{k}" for k in range(1, n)] + ["cd.reversed"]
    cd = resolve_spec("cd", cfg["methods"]["cd"])
    assert plan["variants"]["cd.ckpt1"] == cd | {"schedule": "fixed", "schedule_options": {"checkpoint": 1}}
    assert plan["variants"]["cd.reversed"] == cd | {"schedule": "reversed_order", "schedule_options": {}}
    # default: on the synthetic task only (a group name, as `tasks` takes it), over its 4-checkpoint trajectory
    cfg = load_config("default")
    assert oracle_rows(cfg, "synthetic_subdomains") == ["cd.ckpt1", "cd.ckpt2", "cd.ckpt3", "cd.reversed"]
    assert oracle_rows(cfg, "pubmedqa") == [] and "cd.ckpt1" not in distilled_methods(cfg, "pubmedqa")
    with_rows = load_config("default", {"methods": oracle_plan(cfg)["variants"]})  # as the Snakefile adds them
    job = stage_config(with_rows, "synthetic_subdomains", "distill", "cd.ckpt3")
    assert (job.spec.schedule, job.spec.schedule_options, job.trajectory) == ("fixed", {"checkpoint": 3}, 4)
    # with TD not run, the T* row runs under its own name; a profile without CD gets none (smoke)
    no_td = load_config("default", {"run_methods": ["cd", "scd"]})
    assert oracle_plan(no_td)["tasks"]["synthetic_subdomains"]["cd"]["fixed"][-1] == "cd.ckpt4"
    assert oracle_plan(load_config("smoke")) == {"tasks": {}, "variants": {}}
    assert oracle_plan(load_config("default", {"oracles": None})) == {"tasks": {}, "variants": {}}


def test_bad_oracle_settings_and_fixed_checkpoints_are_named():
    with pytest.raises(ConfigError, match=r"oracles.methods: 'cdd' is not a configured method.*Did you mean 'cd'"):
        load_config("default", {"oracles": {"methods": ["cdd"]}})
    with pytest.raises(ConfigError, match=r"oracles.tasks: 'pubmed' is not a task or group name.*Did you mean"):
        load_config("default", {"oracles": {"methods": ["cd"], "tasks": ["pubmed"]}})
    # a real task the run does not select gets no rows: the profile's oracles survive `--config tasks=[...]`
    other = load_config("default", {"oracles": {"methods": ["cd"], "tasks": ["nrner"]}})
    assert oracle_plan(other) == {"tasks": {}, "variants": {}}
    assert oracle_plan(load_config("default", {"tasks": ["pubmedqa"]})) == {"tasks": {}, "variants": {}}
    with pytest.raises(ConfigError, match=r"'methods' is a required property"):
        load_config("paper", {"oracles": {"tasks": ["pubmedqa"]}})  # paper sets no oracles of its own
    fixed = {"schedule": "fixed", "divergence": "fkl"}
    with pytest.raises(ConfigError, match=r"methods.f.schedule_options.checkpoint: 5 is past the trajectory's 4 "
                                          r"checkpoints; set it to 1..4"):
        load_config("default", {"methods": {"f": fixed | {"schedule_options": {"checkpoint": 5}}},
                                "run_methods": ["td", "f"]})
    with pytest.raises(ConfigError, match=r"methods.f: schedule 'fixed': schedule_options.checkpoint must be an "
                                          r"integer >= 1.*got 0"):
        load_config("default", {"methods": {"f": fixed | {"schedule_options": {"checkpoint": 0}}},
                                "run_methods": ["td", "f"]})
    with pytest.raises(ConfigError, match=r"methods.f.schedule_options.checkpoint: expected an integer"):
        load_config("default", {"methods": {"f": fixed | {"schedule_options": {"checkpoint": "2"}}},
                                "run_methods": ["td", "f"]})
