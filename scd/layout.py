"""Every path of the results layout, named in one place: the Snakefile builds its rules' inputs, outputs and logs
from it, and the code that reads results (aggregation, the results page, the MLflow store) finds them through it.

    <results_dir>/
      <task>/data/                              prepared task data            prepared(task)
      <task>/seed<seed>/                        one seed's runs               seed_dir(task, seed)
        teacher/, student/                      SFT outputs                   sft(task, seed, role)
          summary.json                                                        sft_summary(task, seed, role)
        teacher_outputs/                        teacher-output cache          teacher_outputs(task, seed)
          manifest.json                                                       teacher_outputs_manifest(task, seed)
        distill/<method>/                       distilled student             distill(task, seed, method)
          summary.json                                                        distill_summary(task, seed, method)
        eval/<model>.json                       test evaluation summary       eval_summary(task, seed, model)
        eval/<model>.samples.jsonl              its per-sample records        eval_samples(task, seed, model)
      logs/<task>/prepare.log, logs/<task>/seed<seed>/<job>.log               prepare_log(task), sft_log(...), ...
      leaderboard.json, report.html                                           leaderboard(), report()
      mlflow.db, mlartifacts/                   MLflow store (the default)    mlflow_db(), mlflow_artifacts()
      runs/<id>/record.json                     a job's run record, until and  run_record(id)
      runs/<id>/files/                          after its MLflow sync          run_record_files(id)

Every method takes its parts as strings or numbers, so placeholders make the Snakemake pattern of a path
(`Layout(R).eval_summary("{task}", "{seed}", "{model}")`) and `*` a glob pattern (`Layout(".")` gives one
relative to the results directory).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

Part = str | int


@dataclass(frozen=True)
class Layout:
    results_dir: str | Path

    @property
    def root(self) -> Path:
        return Path(self.results_dir)

    # a task's prepared data, a seed's runs
    def prepared(self, task: Part) -> Path:
        return self.root / str(task) / "data"

    def prepared_manifest(self, task: Part) -> Path:
        return self.prepared(task) / "manifest.json"

    def seed_dir(self, task: Part, seed: Part) -> Path:
        return self.root / str(task) / f"seed{seed}"

    # supervised fine-tuning (role: teacher or student)
    def sft(self, task: Part, seed: Part, role: str) -> Path:
        return self.seed_dir(task, seed) / role

    def sft_summary(self, task: Part, seed: Part, role: str) -> Path:
        return self.sft(task, seed, role) / "summary.json"

    # the teacher-output cache of every teacher checkpoint
    def teacher_outputs(self, task: Part, seed: Part) -> Path:
        return self.seed_dir(task, seed) / "teacher_outputs"

    def teacher_outputs_manifest(self, task: Part, seed: Part) -> Path:
        return self.teacher_outputs(task, seed) / "manifest.json"

    # distillation with one method
    def distill(self, task: Part, seed: Part, method: str) -> Path:
        return self.seed_dir(task, seed) / "distill" / method

    def distill_summary(self, task: Part, seed: Part, method: str) -> Path:
        return self.distill(task, seed, method) / "summary.json"

    # test evaluation of one model (a leaderboard row: teacher_sft, student_zero_shot, a method, ...)
    def eval_summary(self, task: Part, seed: Part, model: str) -> Path:
        return self.seed_dir(task, seed) / "eval" / f"{model}.json"

    def eval_samples(self, task: Part, seed: Part, model: str) -> Path:
        return self.seed_dir(task, seed) / "eval" / f"{model}.samples.jsonl"

    # the jobs' logs
    def prepare_log(self, task: Part) -> Path:
        return self.root / "logs" / str(task) / "prepare.log"

    def _seed_log(self, task: Part, seed: Part, job: str) -> Path:
        return self.root / "logs" / str(task) / f"seed{seed}" / f"{job}.log"

    def sft_log(self, task: Part, seed: Part, role: str) -> Path:
        return self._seed_log(task, seed, f"{role}_sft")

    def teacher_outputs_log(self, task: Part, seed: Part) -> Path:
        return self._seed_log(task, seed, "teacher_outputs")

    def distill_log(self, task: Part, seed: Part, method: str) -> Path:
        return self._seed_log(task, seed, f"distill_{method}")

    def eval_log(self, task: Part, seed: Part, model: str) -> Path:
        return self._seed_log(task, seed, f"eval_{model}")

    # what the workflow ends with
    def leaderboard(self) -> Path:
        return self.root / "leaderboard.json"

    def report(self) -> Path:
        return self.root / "report.html"

    # the default MLflow store (scd/tracking.py: $MLFLOW_TRACKING_URI or the config's mlflow.tracking_uri win)
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    # the jobs' run records (scd/tracking.py), logged into the MLflow store by scd/mlflow_sync.py
    def run_records(self) -> Path:
        return self.root / "runs"

    def run_record(self, run_id: str) -> Path:
        return self.run_records() / run_id / "record.json"

    def run_record_files(self, run_id: str) -> Path:
        return self.run_records() / run_id / "files"
