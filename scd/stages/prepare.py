"""Stage 1: task data -> train/validation/test JSON lines, a tokenizer shared by teacher and student, a manifest."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from scd import tracking
from scd.data import resolve_prompt_format, write_json, write_jsonl
from scd.models import resolve_source
from scd.settings import PrepareJob
from scd.tokenizer import load_tokenizer, train_tokenizer
from tasks import SPLITS, TRANSFER, get_task
from tasks.datafiles import check_pinned, resolve_data_dir


def prepare(job: PrepareJob, out: Path) -> dict:
    task = get_task(job.task)
    options = task.check_options(job.task_options)
    data = _checked_data(job, task)
    splits = task.load(resolve_data_dir(job.data_dir)[0], options)
    if job.tokenizer.source == "teacher":
        tokenizer = load_tokenizer(resolve_source(job.teacher["pretrained"]), job.teacher.get("gguf_file"))
    else:
        texts = [r["prompt"] + r["answer"] for r in splits["train"]]
        tokenizer = train_tokenizer(task.tokenizer, texts, job.tokenizer.vocab_size)
    prompt_format = resolve_prompt_format(tokenizer, job.tokenizer.prompt_format)  # before anything is written

    out.mkdir(parents=True, exist_ok=True)
    written = SPLITS + ((TRANSFER,) if splits.get(TRANSFER) else ())
    hashes = {s: write_jsonl(out / f"{s}.jsonl", splits[s]) for s in written}
    tokenizer.save_pretrained(out / "tokenizer")

    labels = {s: dict(sorted(Counter(r["label"] for r in splits[s] if "label" in r).items())) for s in SPLITS}
    # a config's max_length (the paper's 512) replaces the task's declared one for every later stage
    manifest = {"task": task.name, "options": options, "max_length": job.max_length or task.max_length,
                "counts": {s: len(splits[s]) for s in written},
                "sha256": hashes, "labels": {s: c for s, c in labels.items() if c}, "vocab_size": len(tokenizer),
                "prompt_format": prompt_format,
                "data_checks": task.split_checks(splits, warn=False)}  # duplicate ids, prompts shared with train
    manifest |= _data_manifest(data)
    with tracking.job_run(job, f"{task.name}/prepare", {"task": task.name, "stage": "prepare"},
                          {"task_options": options}) as log:
        log.params({f"split.{s}.sha256": h for s, h in hashes.items()} |
                   {f"split.{s}.n": len(splits[s]) for s in written} | {"vocab_size": len(tokenizer),
                                                                         "prompt_format": prompt_format})
        log.params(_data_params(job, data))
        log.artifact_json(manifest, "manifest.json")  # label counts and sha256 of every split
    write_json(out / "manifest.json", manifest)  # last: its presence marks the stage as complete
    return manifest


# ---- the raw data, checked against the task declaration's sha256 -------------------------------------------------

def _checked_data(job: PrepareJob, task) -> dict[str, dict[str, str]]:
    """{file: {expected, found}} of the task's declared data files; a file that differs stops the job unless the
    config allows modified data (tasks.datafiles.check_pinned)."""
    return check_pinned(task, resolve_data_dir(job.data_dir)[0], job.allow_modified_data)


def _data_manifest(data: dict) -> dict:
    """The manifest's record of the raw data: the sha256 found per file, and the files that differ from the
    declaration (`data_modified`, {file: {expected, found}}; empty when the data is the pinned one)."""
    return {"data_sha256": {f: h["found"] for f, h in data.items()},
            "data_modified": {f: h for f, h in data.items() if h["found"] != h["expected"]}}


def _data_params(job: PrepareJob, data: dict) -> dict:
    return {"allow_modified_data": job.allow_modified_data,
            "data_modified": sum(h["found"] != h["expected"] for h in data.values())} | \
        {f"data.{f}.sha256": h["found"] for f, h in data.items()}
