# scd-bench workflow: task data -> teacher/student SFT -> distillation -> evaluation -> leaderboard -> report.
#
#   snakemake --cores 2                                    # profile `default` (profiles/default, picked up itself)
#   snakemake --workflow-profile profiles/smoke            # the CI-sized run
#   snakemake --config seeds='[0]' ...                     # override any config key; checked against the schema
#
# Every rule calls one `scd` subcommand; the configuration is config/config.yaml, overlaid by
# config/<profile>.yaml and by --config/--configfile, and validated at start (scd/config.py).

import argparse
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from scd.config import (ConfigError, ablation_plan, aggregate_inputs, aggregate_plans, common_settings, data_inputs,
                        enabled_methods, enabled_tasks, expected_plan, from_command_line, leaderboard_methods,
                        load_config, oracle_plan, report_settings, stage_config, task_config, teacher_cache_checkpoints,
                        teacher_seeds, workflow_profile_config)
from scd.dicts import deep_merge
from scd.layout import Layout
from scd.settings import to_json
from tasks import TaskDataError, get_task
from tasks.datafiles import ensure_files, resolve_data_dir

# A workflow profile's `config:` entries are Snakemake's defaults for --config, which any --config on the command line
# replaces whole (`--workflow-profile profiles/smoke --config seeds='[0]'` would run profile `default`), and its
# `configfile` likewise gives way to a --configfile. So the profile in use is read again here and its entries are
# laid under the command line's: other keys keep it, `--config profile=...` still wins. The main process resolves the
# profile as Snakemake does and hands it to the processes it starts (remote jobs evaluate this file again).
PROFILE_ENV = "SCD_WORKFLOW_PROFILE"


def _invocation_dir():
    """The directory snakemake was started in (it has moved to --directory by now; an absolute --directory leaves
    only the shell's $PWD to tell)."""
    here, moved = Path.cwd(), workflow.overwrite_workdir
    if moved and not Path(moved).is_absolute() and here.parts[-len(Path(moved).parts):] == Path(moved).parts:
        return Path(*here.parts[: -len(Path(moved).parts)])
    return Path(os.environ.get("PWD", here)) if moved else here


def workflow_profile():
    """The workflow profile directory in use (--workflow-profile, else profiles/default beside this file; none:
    None), as Snakemake finds it."""
    if workflow.remote_exec:  # a job's own snakemake (cluster executors): the main process's profile, if handed on
        return Path(os.environ[PROFILE_ENV]) if os.environ.get(PROFILE_ENV) else None
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--workflow-profile")
    given = parser.parse_known_args(sys.argv[1:])[0].workflow_profile
    if given == "none":
        return None
    start, base = _invocation_dir(), Path(workflow.basedir)
    name = Path(given or "default")
    candidates = ([start / name, start / "profiles" / name] if given else []) + [base / "profiles" / name]
    return next((p.resolve() for p in candidates if (p / "config.yaml").is_file()), None)


def profile_defaults(profile):
    """The profile's configfile(s) and `config:` entries as one dict (configfile first; scd.config)."""
    return workflow_profile_config(profile, [_invocation_dir(), Path(workflow.basedir)])


PROFILE_DIR = workflow_profile()
os.environ[PROFILE_ENV] = str(PROFILE_DIR or "")
try:
    GIVEN = deep_merge(profile_defaults(PROFILE_DIR), dict(config))
    CFG = load_config(GIVEN.get("profile"), overrides=from_command_line(GIVEN))
    ABLATIONS = ablation_plan(CFG)  # variant methods (e.g. scd+aw.n8) for the ablation plots
    ORACLES = oracle_plan(CFG)  # oracle rows (cd.ckpt1, cd.reversed, ...): the ceiling of one-checkpoint schedules
except ConfigError as e:
    raise WorkflowError(str(e)) from None

R = CFG["results_dir"]
L = Layout(R)  # every path below comes from it (scd/layout.py); "{task}" etc. make Snakemake's patterns
TASKS = enabled_tasks(CFG)
SEEDS = CFG["seeds"]
METHODS = enabled_methods(CFG)  # the leaderboard's rows
# What the leaderboard reads and expects, from the configuration alone (scd/config.py): `scd collect` computes the same
# to aggregate results run in parts. Computed before the variants join CFG["methods"] below, as `scd collect` does.
AGGREGATE = {"inputs": aggregate_inputs(CFG), "methods": leaderboard_methods(CFG), "plans": aggregate_plans(CFG),
             "expect": expected_plan(CFG)}
AGGREGATE_INPUTS = AGGREGATE["inputs"]  # every file `scd aggregate` reads (rule aggregate, and rule all: see there)
CFG["methods"].update(ABLATIONS["variants"] | ORACLES["variants"])
# shared_teacher: the teacher of the first seed (its fine-tuning, trajectory and outputs) serves every seed, and its
# evaluations are reused for the others (rule shared_teacher_evaluation); else each seed has its own teacher.
TEACHER_SEED = teacher_seeds(CFG)
THREADS = CFG.get("threads", 1)


def teacher_cache_names(task):
    """The teacher-output cache's files, one per teacher checkpoint the task's distillations read (ckpt-k, and best
    for T*: scd/distill/trajectory.py)."""
    return [f"{name}.safetensors" for name in teacher_cache_checkpoints(CFG, task)]


# The teacher-output caches are the run's largest files and only the distillation jobs of their task and seed read
# them: temporary outputs, deleted once those jobs are done (their manifests stay; aggregate reads them). `snakemake
# --notemp` keeps them, so a method enabled later distils without the teacher pass, and without redoing the seed's
# other methods, which a regenerated cache makes Snakemake rerun. The files are named (a temp output must be a
# file) when every task saves the same number of teacher checkpoints; otherwise the cache stays, as a directory.
_CACHE_NAMES = {tuple(teacher_cache_names(t)) for t in TASKS}
TEACHER_CACHE = ([str(L.teacher_outputs("{task}", "{seed}") / n) for n in next(iter(_CACHE_NAMES))]
                 if len(_CACHE_NAMES) == 1 else None)  # the files (patterns); None: the directory, kept

if not workflow.remote_exec:  # what runs, in one line, before anything else does
    _from = f"; workflow profile {os.path.relpath(PROFILE_DIR, workflow.basedir)}" if PROFILE_DIR else ""
    print(f"scd-bench: profile {CFG['profile']} (config/{CFG['profile']}.yaml{_from}), tasks [{', '.join(TASKS)}], "
          f"methods [{', '.join(METHODS)}], seeds {SEEDS}, results -> {os.path.abspath(R)}", file=sys.stderr)

# Task data is checked (sha256) at start, not in a job minutes later: missing files are fetched into the per-user
# cache, or stop the run when the data directory was given explicitly; files that differ from the pinned ones stop
# it too, unless the config allows modified data. The raw files are the prepare rule's inputs: a change re-prepares.
for _task in TASKS if not workflow.remote_exec else []:
    if get_task(_task).data:
        try:
            ensure_files(get_task(_task), *resolve_data_dir(task_config(CFG, _task).get("data_dir")),
                         allow_modified=task_config(CFG, _task).get("allow_modified_data", False),
                         say=lambda line: print(f"scd-bench: {line}", file=sys.stderr))
        except TaskDataError as e:
            raise WorkflowError(str(e)) from None

wildcard_constraints:
    task="[a-z0-9_]+",
    seed=r"\d+",
    model="teacher_sft|student_sft",  # rule evaluate; distilled students are evaluated by rule distill
    method="[a-z0-9][a-z0-9_+.-]*",
    role="teacher|student",


# On a cluster these run in the Snakemake process itself: seconds of JSON and HTML, not worth a queue wait.
localrules:
    all,
    aggregate,
    report,


def teacher_seed(wc):
    """The seed whose teacher a job of seed `wc.seed` reads (TEACHER_SEED)."""
    return TEACHER_SEED[int(wc.seed)]


def job_config(stage, name=None):
    """The job's settings as a JSON param: a change to what the stage reads reruns it, nothing else does."""
    return lambda wc: to_json(stage_config(CFG, wc.task, stage, name or getattr(wc, "role", None)
                                           or getattr(wc, "method", None)))


onstart:
    # One process creates the MLflow store before parallel jobs start (concurrent first writers race on the
    # schema), and opens the parent run that groups this invocation's jobs. The jobs write run records
    # (scd/tracking.py); the end of the invocation logs them into the store (scd/mlflow_sync.py), then closes it.
    from scd import mlflow_sync

    try:
        os.environ[mlflow_sync.PARENT_ENV] = mlflow_sync.start_invocation(common_settings(CFG))
    except mlflow_sync.StoreError as e:  # unreadable, or locked beyond the retries: the store and the remedy
        raise WorkflowError(str(e)) from None


def end_invocation(ok):
    from scd import mlflow_sync

    try:
        mlflow_sync.sync(R)
    except (mlflow_sync.StoreError, mlflow_sync.RecordError) as e:  # the results are written; `scd tracking sync` later
        print(f"scd-bench: the jobs' run records were not all logged to MLflow: {e}", file=sys.stderr)
    if os.environ.get(mlflow_sync.PARENT_ENV):
        try:
            mlflow_sync.end_invocation(common_settings(CFG), os.environ[mlflow_sync.PARENT_ENV], ok=ok)
        except mlflow_sync.StoreError as e:  # the results are written; only the run's record stays open
            print(f"scd-bench: the workflow's MLflow run was not closed: {e}", file=sys.stderr)


onsuccess:
    end_invocation(ok=True)

onerror:
    end_invocation(ok=False)


# The report, and every planned run's results by name: a results directory without Snakemake's metadata (copied,
# moved, or .snakemake deleted) has nothing that says its leaderboard predates a method enabled since, and Snakemake
# then plans nothing for the method's missing files; asked for here, they are produced and the leaderboard redone.
rule all:
    input:
        L.report(),
        [f for files in AGGREGATE_INPUTS.values() for f in files],


rule prepare:
    input:
        raw=lambda wc: data_inputs(CFG, wc.task),  # the task's declared data files ([] for generated tasks)
    output:
        data=directory(L.prepared("{task}")),
        manifest=L.prepared_manifest("{task}"),  # written inside data; aggregate reads it
    params:
        cfg=job_config("prepare"),
    log:
        L.prepare_log("{task}"),
    shell:
        "scd prepare --task {wildcards.task} --config {params.cfg:q} --out {output.data:q} > {log:q} 2>&1"


rule sft:
    input:
        data=L.prepared("{task}"),
    output:
        directory(L.sft("{task}", "{seed}", "{role}")),
    params:
        cfg=job_config("sft"),
    threads: THREADS
    priority: 2  # the critical path: teacher SFT, its outputs, then the distillations they unlock (leaves last)
    log:
        L.sft_log("{task}", "{seed}", "{role}"),
    shell:
        "scd sft --task {wildcards.task} --role {wildcards.role} --seed {wildcards.seed} --config {params.cfg:q}"
        " --data {input.data:q} --out {output:q} > {log:q} 2>&1"


rule teacher_outputs:
    input:
        data=L.prepared("{task}"),
        teacher=L.sft("{task}", "{seed}", "teacher"),
    output:
        cache=temp(TEACHER_CACHE) if TEACHER_CACHE else directory(L.teacher_outputs("{task}", "{seed}")),
        manifest=L.teacher_outputs_manifest("{task}", "{seed}"),  # written inside the cache; aggregate reads it
    params:
        cfg=job_config("teacher_outputs"),
        out=lambda wc: L.teacher_outputs(wc.task, wc.seed),
    threads: THREADS
    priority: 3
    log:
        L.teacher_outputs_log("{task}", "{seed}"),
    shell:
        "scd teacher-outputs --task {wildcards.task} --seed {wildcards.seed} --config {params.cfg:q}"
        " --data {input.data:q} --teacher {input.teacher:q} --out {params.out:q} > {log:q} 2>&1"


# A distillation job ends with the test evaluation of its student (the same code as rule `evaluate`, its own
# MLflow run): one job start-up (imports of torch, transformers and mlflow) less per distilled method.
rule distill:
    input:
        data=L.prepared("{task}"),
        teacher=lambda wc: L.sft(wc.task, teacher_seed(wc), "teacher"),
        teacher_outputs=lambda wc: ([p.format(task=wc.task, seed=teacher_seed(wc)) for p in TEACHER_CACHE]
                                    if TEACHER_CACHE else L.teacher_outputs(wc.task, teacher_seed(wc))),
        student=L.sft("{task}", "{seed}", "student"),
    output:
        model=directory(L.distill("{task}", "{seed}", "{method}")),
        distill_summary=L.distill_summary("{task}", "{seed}", "{method}"),  # written inside model; aggregate reads it
        summary=L.eval_summary("{task}", "{seed}", "{method}"),
        samples=L.eval_samples("{task}", "{seed}", "{method}"),
    params:
        cfg=job_config("distill"),
        teacher_outputs=lambda wc: L.teacher_outputs(wc.task, teacher_seed(wc)),
    threads: THREADS
    priority: 1
    log:
        L.distill_log("{task}", "{seed}", "{method}"),
    shell:
        "scd distill --task {wildcards.task} --method {wildcards.method} --seed {wildcards.seed}"
        " --config {params.cfg:q} --data {input.data:q} --teacher {input.teacher:q} --student {input.student:q}"
        " --teacher-outputs {params.teacher_outputs:q} --out {output.model:q} --eval-out {output.summary:q}"
        " > {log:q} 2>&1"


# The SFT models' test evaluation (distilled students are evaluated in their distillation job; method names
# cannot be teacher_sft / student_sft / *_zero_shot, see scd/distill/methods.py).
ruleorder: evaluate > zero_shot > distill


# Teacher and student before any fine-tuning (the paper's zero-shot rows): the pretrained model, or the seeded
# random initialisation of the embedded default.
rule zero_shot:
    input:
        data=L.prepared("{task}"),
    output:
        summary=L.eval_summary("{task}", "{seed}", "{role}_zero_shot"),
        samples=L.eval_samples("{task}", "{seed}", "{role}_zero_shot"),
    params:
        cfg=job_config("zero_shot"),
    threads: THREADS
    log:
        L.eval_log("{task}", "{seed}", "{role}_zero_shot"),
    shell:
        "scd evaluate --task {wildcards.task} --name {wildcards.role}_zero_shot --seed {wildcards.seed}"
        " --config {params.cfg:q} --data {input.data:q} --zero-shot {wildcards.role} --out {output.summary:q}"
        " > {log:q} 2>&1"


rule evaluate:
    input:
        data=L.prepared("{task}"),
        model=lambda wc: L.sft(wc.task, wc.seed, wc.model.removesuffix("_sft")),
    output:
        summary=L.eval_summary("{task}", "{seed}", "{model}"),
        samples=L.eval_samples("{task}", "{seed}", "{model}"),
    params:
        cfg=job_config("evaluate"),
    threads: THREADS
    log:
        L.eval_log("{task}", "{seed}", "{model}"),
    shell:
        "scd evaluate --task {wildcards.task} --name {wildcards.model} --seed {wildcards.seed}"
        " --config {params.cfg:q} --data {input.data:q} --model {input.model:q} --out {output.summary:q}"
        " > {log:q} 2>&1"


# A shared teacher's rows for the other seeds: its test evaluations, reused (the same model, the same items).
if len(set(TEACHER_SEED.values())) < len(SEEDS):

    rule shared_teacher_evaluation:
        input:
            summary=lambda wc: L.eval_summary(wc.task, SEEDS[0], f"teacher{wc.row}"),
            samples=lambda wc: L.eval_samples(wc.task, SEEDS[0], f"teacher{wc.row}"),
        output:
            summary=L.eval_summary("{task}", "{seed}", "teacher{row}"),
            samples=L.eval_samples("{task}", "{seed}", "teacher{row}"),
        wildcard_constraints:
            seed="|".join(str(s) for s in SEEDS[1:]),
            row="_sft|_zero_shot",
        shell:
            "scd reuse-evaluation --source {input.summary:q} --seed {wildcards.seed} --out {output.summary:q}"

    ruleorder: shared_teacher_evaluation > evaluate
    ruleorder: shared_teacher_evaluation > zero_shot
    ruleorder: shared_teacher_evaluation > distill
    localrules: shared_teacher_evaluation


# Every file `scd aggregate` reads is an input here, and it reads no other: each evaluation with its per-sample
# records, each distillation's summary (schedules, adaptive weights, ablation times) and each seed's teacher-output
# manifest (ablation checkpoint sizes).
rule aggregate:
    input:
        **AGGREGATE_INPUTS,
    output:
        L.leaderboard(),
    params:
        methods=AGGREGATE["methods"],  # the oracle rows after the rest
        profile=CFG["profile"],
        results_dir=R,
        # the plans: the ablations' (tasks, axes) and the oracle rows per task and base method (`oracles`)
        ablations=json.dumps(AGGREGATE["plans"], sort_keys=True),
        # the runs the leaderboard must hold: aggregate refuses to leave one out
        expect=json.dumps(AGGREGATE["expect"], sort_keys=True),
    shell:
        "scd aggregate {input.evals:q} --samples {input.samples:q} --distill-summaries {input.distill_summaries:q}"
        " --teacher-outputs-manifests {input.teacher_outputs_manifests:q}"
        " --prepared-manifests {input.prepared_manifests:q} --methods {params.methods:q}"
        " --profile {params.profile:q} --results-dir {params.results_dir:q} --ablations {params.ablations:q}"
        " --expect {params.expect:q} --out {output:q}"


rule report:
    input:
        L.leaderboard(),
    output:
        L.report(),
    params:
        ui_url=report_settings(CFG).ui_url,
    shell:
        "scd report --leaderboard {input:q} --out {output:q} --ui-url {params.ui_url:q}"
