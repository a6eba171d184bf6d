# scd-bench workflow: task data -> teacher/student SFT -> distillation -> evaluation -> leaderboard -> report.
#
#   snakemake --cores 2                                    # profile `default` (profiles/default, picked up itself)
#   snakemake --workflow-profile profiles/smoke            # the CI-sized run
#   snakemake --config seeds='[0]' ...                     # override any config key; checked against the schema
#
# Every rule calls one `scd` subcommand; the configuration is config/config.yaml, overlaid by
# config/<profile>.yaml and by --config/--configfile, and validated at start (scd/config.py).

import json
import os

from snakemake.exceptions import WorkflowError

from scd.config import (ConfigError, ablation_plan, common_settings, enabled_methods, enabled_tasks,
                        from_command_line, load_config, stage_config, task_config)
from scd.settings import to_json
from tasks import TaskDataError, get_task
from tasks.datafiles import ensure_files, resolve_data_dir

try:
    CFG = load_config(config.get("profile"), overrides=from_command_line(dict(config)))
    ABLATIONS = ablation_plan(CFG)  # variant methods (e.g. scd+aw.n8) for the ablation plots
except ConfigError as e:
    raise WorkflowError(str(e)) from None

R = CFG["results_dir"]
TASKS = enabled_tasks(CFG)
SEEDS = CFG["seeds"]
METHODS = enabled_methods(CFG)  # the leaderboard's rows
CFG["methods"].update(ABLATIONS["variants"])
MODELS = {t: ["teacher_zero_shot", "student_zero_shot", "teacher_sft", "student_sft"] + METHODS + (list(ABLATIONS["variants"]) if t in ABLATIONS["tasks"] else [])
          for t in TASKS}
EVALS = [f"{R}/{t}/seed{s}/eval/{m}" for t in TASKS for s in SEEDS for m in MODELS[t]]
THREADS = CFG.get("threads", 1)

# Task data is checked (sha256) at start, not in a job minutes later (tasks already prepared need none): missing
# files are fetched into the per-user cache, or stop the run when the data directory was given explicitly.
for _task in TASKS:
    if get_task(_task).data and not os.path.exists(f"{R}/{_task}/data"):
        try:
            ensure_files(get_task(_task), *resolve_data_dir(task_config(CFG, _task).get("data_dir")))
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


def job_config(stage, name=None):
    """The job's settings as a JSON param: a change to what the stage reads reruns it, nothing else does."""
    return lambda wc: to_json(stage_config(CFG, wc.task, stage, name or getattr(wc, "role", None)
                                           or getattr(wc, "method", None)))


onstart:
    # One process creates the MLflow store before parallel jobs start (concurrent first writers race on the
    # schema), and opens the parent run that groups this invocation's jobs.
    from scd import tracking

    os.environ[tracking.PARENT_ENV] = tracking.start_invocation(common_settings(CFG))

onsuccess:
    from scd import tracking

    if os.environ.get(tracking.PARENT_ENV):
        tracking.end_invocation(common_settings(CFG), os.environ[tracking.PARENT_ENV], ok=True)

onerror:
    from scd import tracking

    if os.environ.get(tracking.PARENT_ENV):
        tracking.end_invocation(common_settings(CFG), os.environ[tracking.PARENT_ENV], ok=False)


rule all:
    input:
        f"{R}/report.html",


rule prepare:
    output:
        directory(f"{R}/{{task}}/data"),
    params:
        cfg=job_config("prepare"),
    log:
        f"{R}/logs/{{task}}/prepare.log",
    shell:
        "scd prepare --task {wildcards.task} --config {params.cfg:q} --out {output} > {log} 2>&1"


rule sft:
    input:
        data=f"{R}/{{task}}/data",
    output:
        directory(f"{R}/{{task}}/seed{{seed}}/{{role}}"),
    params:
        cfg=job_config("sft"),
    threads: THREADS
    log:
        f"{R}/logs/{{task}}/seed{{seed}}/{{role}}_sft.log",
    shell:
        "scd sft --task {wildcards.task} --role {wildcards.role} --seed {wildcards.seed} --config {params.cfg:q}"
        " --data {input.data} --out {output} > {log} 2>&1"


rule teacher_outputs:
    input:
        data=f"{R}/{{task}}/data",
        teacher=f"{R}/{{task}}/seed{{seed}}/teacher",
    output:
        directory(f"{R}/{{task}}/seed{{seed}}/teacher_outputs"),
    params:
        cfg=job_config("teacher_outputs"),
    threads: THREADS
    log:
        f"{R}/logs/{{task}}/seed{{seed}}/teacher_outputs.log",
    shell:
        "scd teacher-outputs --task {wildcards.task} --seed {wildcards.seed} --config {params.cfg:q}"
        " --data {input.data} --teacher {input.teacher} --out {output} > {log} 2>&1"


# A distillation job ends with the test evaluation of its student (the same code as rule `evaluate`, its own
# MLflow run): job start-up costs ~8 s of imports, a fifth of a distillation job here.
rule distill:
    input:
        data=f"{R}/{{task}}/data",
        teacher=f"{R}/{{task}}/seed{{seed}}/teacher",
        teacher_outputs=f"{R}/{{task}}/seed{{seed}}/teacher_outputs",
        student=f"{R}/{{task}}/seed{{seed}}/student",
    output:
        model=directory(f"{R}/{{task}}/seed{{seed}}/distill/{{method}}"),
        summary=f"{R}/{{task}}/seed{{seed}}/eval/{{method}}.json",
        samples=f"{R}/{{task}}/seed{{seed}}/eval/{{method}}.samples.jsonl",
    params:
        cfg=job_config("distill"),
    threads: THREADS
    log:
        f"{R}/logs/{{task}}/seed{{seed}}/distill_{{method}}.log",
    shell:
        "scd distill --task {wildcards.task} --method {wildcards.method} --seed {wildcards.seed}"
        " --config {params.cfg:q} --data {input.data} --teacher {input.teacher} --student {input.student}"
        " --teacher-outputs {input.teacher_outputs} --out {output.model} --eval-out {output.summary} > {log} 2>&1"


# The SFT models' test evaluation (distilled students are evaluated in their distillation job; method names
# cannot be teacher_sft / student_sft / *_zero_shot, see scd/distill/methods.py).
ruleorder: evaluate > zero_shot > distill


# Teacher and student before any fine-tuning (the paper's zero-shot rows): the pretrained model, or the seeded
# random initialisation of the embedded default.
rule zero_shot:
    input:
        data=f"{R}/{{task}}/data",
    output:
        summary=f"{R}/{{task}}/seed{{seed}}/eval/{{role}}_zero_shot.json",
        samples=f"{R}/{{task}}/seed{{seed}}/eval/{{role}}_zero_shot.samples.jsonl",
    params:
        cfg=job_config("zero_shot"),
    threads: THREADS
    log:
        f"{R}/logs/{{task}}/seed{{seed}}/eval_{{role}}_zero_shot.log",
    shell:
        "scd evaluate --task {wildcards.task} --name {wildcards.role}_zero_shot --seed {wildcards.seed}"
        " --config {params.cfg:q} --data {input.data} --zero-shot {wildcards.role} --out {output.summary} > {log} 2>&1"


rule evaluate:
    input:
        data=f"{R}/{{task}}/data",
        model=lambda wc: f"{R}/{wc.task}/seed{wc.seed}/{wc.model.removesuffix('_sft')}",
    output:
        summary=f"{R}/{{task}}/seed{{seed}}/eval/{{model}}.json",
        samples=f"{R}/{{task}}/seed{{seed}}/eval/{{model}}.samples.jsonl",
    params:
        cfg=job_config("evaluate"),
    threads: THREADS
    log:
        f"{R}/logs/{{task}}/seed{{seed}}/eval_{{model}}.log",
    shell:
        "scd evaluate --task {wildcards.task} --name {wildcards.model} --seed {wildcards.seed}"
        " --config {params.cfg:q} --data {input.data} --model {input.model} --out {output.summary} > {log} 2>&1"


rule aggregate:
    input:
        evals=[f"{e}.json" for e in EVALS],
        samples=[f"{e}.samples.jsonl" for e in EVALS],
    output:
        f"{R}/leaderboard.json",
    params:
        methods=" ".join(METHODS),
        profile=CFG["profile"],
        results_dir=R,
        ablations=json.dumps({"tasks": ABLATIONS["tasks"], "axes": ABLATIONS["axes"]}, sort_keys=True),
    shell:
        "scd aggregate {input.evals} --methods {params.methods} --profile {params.profile}"
        " --results-dir {params.results_dir:q} --ablations {params.ablations:q}"
        " --out {output}"


rule report:
    input:
        f"{R}/leaderboard.json",
    output:
        f"{R}/report.html",
    shell:
        "scd report --leaderboard {input} --out {output}"
