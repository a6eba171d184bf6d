"""The `scd` command: one subcommand per pipeline stage (Snakemake rules call these), plus listings.

Stage commands take the job's configuration as JSON (`--config`, as the Snakefile passes it) or load the
repository's config for a profile (`--profile`), so each stage also runs by hand.

The command imports what the subcommand needs and nothing more: project modules are loaded on demand by name
(`_load`), so `scd tasks list` or `--help` do not pay for torch and transformers, and a stage job loads its own
stage module only.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
from pathlib import Path


class UsageError(ValueError):
    """A bad command-line value: one line on stderr, exit code 2."""


def _load(module: str):
    """A project module, imported when a subcommand needs it."""
    return importlib.import_module(module)


def _job_config(args, stage: str, name: str | None = None):
    """The job's settings (scd.settings): from --config JSON (what the Snakefile passes), else built from the
    repository's config for --profile."""
    if args.config:
        return _load("scd.settings").job_from_json(stage, args.config)
    config = _load("scd.config")
    cfg = config.load_config(args.profile)
    if args.task not in cfg["tasks"]:
        raise UsageError(f"task {args.task!r} is not in the {args.profile!r} configuration; "
                         f"configured: {', '.join(cfg['tasks'])}")
    return config.stage_config(cfg, args.task, stage, name)


def _common(p: argparse.ArgumentParser, seed: bool = True) -> None:
    p.add_argument("--task", required=True, help="task name from the registry (see `scd tasks`)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", help="the job's configuration as JSON (what the Snakefile passes)")
    src.add_argument("--profile", default="default", help="else: load config/config.yaml with this profile's overlay")
    if seed:
        p.add_argument("--seed", type=int, required=True)


def cmd_prepare(args):
    m = _load("scd.stages.prepare").prepare(_job_config(args, "prepare"), Path(args.out))
    print(f"prepared {m['task']}: {m['counts']}, vocabulary {m['vocab_size']}")


def cmd_sft(args):
    job = _job_config(args, "sft", args.role)
    if job.role != args.role:
        raise UsageError(f"--role {args.role} but the job configuration is the {job.role}'s")
    s = _load("scd.stages.sft").sft(job, args.seed, Path(args.data), Path(args.out))
    print(f"{args.role} SFT: best validation score {s['best_val_score']:.4f} at step {s['best_step']}/{s['steps']}, "
          f"{s['train_seconds']:.1f} s, {s['tokens_per_second']:.0f} tokens/s, MLflow run {s['run_id']}")


def cmd_teacher_outputs(args):
    m = _load("scd.stages.teacher_outputs").write_teacher_outputs(
        _job_config(args, "teacher_outputs"), args.seed, Path(args.data), Path(args.teacher), Path(args.out))
    secs = sum(c["seconds"] for c in m["checkpoints"].values())
    print(f"teacher outputs of {len(m['checkpoints'])} checkpoints on {m['train_rows']} training and "
          f"{m['transfer_rows']} transfer rows in {secs:.1f} s")


def cmd_distill(args):
    job = _job_config(args, "distill", args.method)
    if job.method != args.method:
        raise UsageError(f"--method {args.method} but the job configuration is method {job.method!r}'s")
    s = _load("scd.stages.distill").distill(job, args.seed, Path(args.data), Path(args.teacher), Path(args.student),
                                           Path(args.out), Path(args.teacher_outputs) if args.teacher_outputs else None)
    print(f"{args.method}: teachers {s['schedule']}, best validation score {s['best_val_score']:.4f}, "
          f"{s['train_seconds']:.1f} s, MLflow run {s['run_id']}")
    if args.eval_out:  # the test evaluation in the same process: one job start-up less
        _evaluate(job, args.out, args.method, args.seed, args.data, args.eval_out)


def _evaluate(job, model, name, seed, data, out):
    s = _load("scd.stages.evaluate").evaluate_model(job, Path(model) if model else None, name, seed, Path(data),
                                                    Path(out))
    subs = ", ".join(f"{k} {v['score']:.4f}" for k, v in s["subdomains"].items())
    scores = ", ".join(f"{k} {v:.4f}" for k, v in s["scores"].items())
    print(f"{name} on {s['task']} test: {scores}" + (f" ({s['metric']} per subdomain: {subs})" if subs else ""))


def cmd_evaluate(args):
    if bool(args.model) == bool(args.zero_shot):
        raise UsageError("give either --model (a trained model directory) or --zero-shot teacher|student")
    job = _job_config(args, "zero_shot", args.zero_shot) if args.zero_shot else _job_config(args, "evaluate")
    _evaluate(job, args.model, args.name, args.seed, args.data, args.out)


def cmd_reuse_evaluation(args):
    s = _load("scd.stages.evaluate").reuse_evaluation(Path(args.source), args.seed, Path(args.out))
    print(f"{s['model']} on {s['task']}: seed {s['reused_from_seed']}'s evaluation reused as seed {args.seed}'s")


def cmd_aggregate(args):
    try:
        ablations = json.loads(args.ablations) if args.ablations else None
    except json.JSONDecodeError as e:
        raise UsageError(f"--ablations is not valid JSON: {e}") from None
    try:
        expect = json.loads(args.expect) if args.expect else None
    except json.JSONDecodeError as e:
        raise UsageError(f"--expect is not valid JSON: {e}") from None
    lb = _load("scd.stages.aggregate").aggregate(
        [Path(f) for f in args.evals], args.methods, args.profile, args.results_dir, ablations,
        samples=[Path(f) for f in args.samples], distill_summaries=[Path(f) for f in args.distill_summaries],
        teacher_outputs_manifests=[Path(f) for f in args.teacher_outputs_manifests], expect=expect,
        prepared_manifests=[Path(f) for f in args.prepared_manifests])
    _load("scd.data").write_json(args.out, lb)


def cmd_report(args):
    board = json.loads(Path(args.leaderboard).read_text())
    Path(args.out).write_text(_load("report.render").render(board, ui_url=args.ui_url), encoding="utf-8")


def _part_command(args):
    """(task, seeds) -> the command of the part that writes their results: the workflow over that task (and those
    seeds, unless None: every seed), with the --config entries given here."""
    config = _load("scd.config")
    base = (f"snakemake --workflow-profile profiles/{args.profile}" if config.workflow_profile_dir(args.profile)
            else f"snakemake --config profile={args.profile}")
    def command(task: str, seeds: list | None) -> str:
        replaced = ("tasks=", "seeds=") if seeds else ("tasks=",)  # the part's own entries
        others = [shlex.quote(e) for e in args.config if not e.startswith(replaced)]
        upto = [f"seeds='[{','.join(map(str, seeds))}]'"] if seeds else []
        return " ".join([base, *([] if "--config" in base else ["--config"]), *others, f"tasks='[{task}]'", *upto])
    return command


def cmd_collect(args):
    """The leaderboard and report of a results directory run in parts, from the files the workflow's rule aggregate
    reads (committed, or left by the parts' runs), without running anything; or (--list) those files."""
    config = _load("scd.config")
    cfg = config.load_workflow_config(args.profile, args.config)
    stage = _load("scd.stages.aggregate")
    if args.list:
        inputs = stage.collect_inputs(cfg, _part_command(args))
        print("\n".join(os.path.relpath(f) for files in inputs.values() for f in files))
        return
    board = stage.collect(cfg, _part_command(args))
    layout = _load("scd.layout").Layout(cfg["results_dir"])
    _load("scd.data").write_json(layout.leaderboard(), board)  # then the report of that file, as rules aggregate
    board = json.loads(layout.leaderboard().read_text())        # and report do
    page = _load("report.render").render(board, ui_url=config.report_settings(cfg).ui_url)
    tmp = layout.report().with_name(layout.report().name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(layout.report())
    n = sum(len(cell) for cell in board["cells"].values())
    print(f"{layout.leaderboard()} and {layout.report()}: {len(board['rows'])} rows on {len(board['tasks'])} tasks "
          f"({n} cells), from the files of profile {cfg['profile']!r} in {layout.root}")


def cmd_results_page(args):
    argv = ["--results", args.results] + (["--out", args.out] if args.out else []) + \
        (["--command", args.command] if args.command else []) + (["--readme", args.readme] if args.readme else [])
    return _load("report.results_page").main(argv)


def cmd_tasks(args):
    tasks = _load("tasks")
    for t in tasks.list_tasks():
        metrics = ", ".join(f"{m['key']} {'↑' if m['direction'] == 'max' else '↓'}" for m in t.metric_specs)
        src = (t.data or {}).get("source") or {}
        origin = f"{src['repo']}@{src['commit'][:7]} ({src.get('licence', '?')})" if src else "generated"
        print(f"{t.name:26s} {t.language or '-':9s} {t.evaluation['mode']:8s} {metrics:40s} "
              f"[{', '.join(t.groups)}]  {origin}")
    print("\ngroups (select with `tasks: [<group>]` in the config):")
    for group, members in sorted(tasks.task_groups().items()):
        print(f"  {group:16s} {len(members):3d} tasks: {', '.join(members)}")
    broken = tasks.broken_task_files()
    if broken:  # runs that use other tasks are unaffected; a run selecting one of these stops with its message
        print(f"\nunusable task files ({len(broken)}; runs that select what they define stop with this message):")
        for message in broken:
            print(f"  {message}")


def cmd_methods(args):
    if args.action == "check":
        return _load("scd.distill.checks").main(args.names)
    plugins = _load("scd.distill.plugins")
    plugins.load_plugins(quiet=True)  # a broken plugin is one line below, the rest is listed
    reg_mod, resolve_spec = _load("scd.distill.parts"), _load("scd.distill.methods").resolve_spec

    def options(d: dict) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in d.items()) or "-"

    for line in [p.line() for p in plugins.broken_plugins()] + plugins.group_typos():
        print(f"broken: {line}")
    config = _load("scd.config")
    try:
        cfg = config.load_config(args.profile)
    except config.ConfigError as e:  # e.g. a method of a broken plugin in run_methods: say so, list the parts
        print(f"scd methods: warning: profile {args.profile!r}: {e}".replace("\n", " "), file=sys.stderr)
        cfg = {"profile": args.profile, "methods": {}, "run_methods": []}
    print(f"methods defined for profile {cfg['profile']!r} (config `methods`; [runs]: in its `run_methods`; "
          f"[reference] / [common]: the protocol of the registered preset it starts from):")
    for name, spec in cfg["methods"].items():
        try:
            full = resolve_spec(name, spec)
        except (KeyError, ValueError) as e:  # a preset of a plugin that failed to load
            print(f"  {name:14s} unavailable: {plugins.explain(str(e))}")
            continue
        off = "  [runs]" if name in cfg["run_methods"] else ""
        preset = spec.get("preset", name if name in reg_mod.METHODS else None)
        protocol = f"[{reg_mod.preset_protocol(preset)}] " if preset in reg_mod.METHODS else ""
        parts = (f"schedule={full['schedule']} divergence={full['divergence']} weighting={full['weighting']} "
                 f"responses={full['responses']} alpha={full['alpha']} temperature={full['temperature']}")
        extra = {k: full[k] for k in ("options", "schedule_options", "weighting_options", "responses_options")
                 if full.get(k)}
        print(f"  {name:14s} {protocol}{parts}{' ' + str(extra) if extra else ''}{off}")
    for title, reg in (("method presets", reg_mod.METHODS), ("divergences", reg_mod.DIVERGENCES),
                       ("teacher schedules", reg_mod.SCHEDULES), ("sample weightings", reg_mod.WEIGHTINGS),
                       ("response sources", reg_mod.RESPONSES)):
        print(f"\n{title}:" if reg is not reg_mod.METHODS else
              f"\n{title} (protocol: common = the suite's shared one, CE mix alpha 0.5 on gold rows; reference = "
              f"as the reference code runs it, `<common preset>{reg_mod.REFERENCE_SUFFIX}`):")
        for name, obj in reg.items():
            ref = reg.meta(name).get("reference", "")
            if reg is reg_mod.METHODS:
                display = reg.meta(name).get("display")
                print(f"  {name:14s} {reg_mod.preset_protocol(name):9s} {options(obj)}")
                if display:
                    print(f"  {'':14s} shown as: {display}")
            else:
                doc = (obj.__doc__ or "").strip().splitlines()
                print(f"  {name:14s} {doc[0] if doc else ''}")
                print(f"  {'':14s} hyperparameters: {options(reg_mod.hyperparameters(obj))}")
            if ref:
                print(f"  {'':14s} reference: {ref}")


def cmd_tracking(args):
    """Log the run records of finished jobs into the MLflow store (scd/mlflow_sync.py)."""
    synced = _load("scd.mlflow_sync").sync(args.results)
    print(f"{len(synced)} run record(s) of {args.results} in the MLflow store")


# Stage commands write run records (scd/tracking.py); run by hand (no workflow around them, whose end syncs) they
# log their own records into MLflow as they end.
STAGES = ("prepare", "sft", "teacher-outputs", "distill", "evaluate")


def _records_so_far() -> int:
    tracking = sys.modules.get("scd.tracking")  # not imported: no record written yet
    return len(tracking.records_written()) if tracking else 0


def _sync_own_records(args, since: int) -> None:
    """The records this command wrote (not those of earlier calls in the same process, e.g. tests)."""
    tracking = sys.modules.get("scd.tracking")  # not imported: the command wrote no record
    if args.command in STAGES and tracking and not os.environ.get(tracking.PARENT_ENV):
        own = tracking.records_written()[since:]
        if own:
            _load("scd.mlflow_sync").sync_records(own)


def cmd_check_config(args):
    cfg = _load("scd.config").load_config(args.profile)
    print(f"configuration for profile {cfg['profile']!r} is valid: tasks {', '.join(cfg['tasks'])} "
          f"(selected as {', '.join(cfg['task_selection'])}); "
          f"methods {', '.join(cfg['run_methods'])}; seeds {cfg['seeds']}")


def _data_dir(args) -> Path:
    """--data-dir, else $SCD_DATA_DIR, else the profile's config key data_dir (the config is loaded only then)."""
    config = _load("scd.config")
    if args.data_dir:
        return Path(args.data_dir).expanduser()
    if os.environ.get(config.DATA_DIR_ENV):
        return Path(os.environ[config.DATA_DIR_ENV]).expanduser()
    return config.data_dir(config.load_config(args.profile))


def cmd_data(args):
    tasks, datafiles = _load("tasks"), _load("tasks.datafiles")
    get_task, list_tasks = tasks.get_task, tasks.list_tasks
    root = _data_dir(args)
    if args.action == "verify":
        selected = [get_task(t) for t in args.tasks] if args.tasks else [t for t in list_tasks() if t.data]
        checks = datafiles.verify(selected, root)
        for c in checks:
            print(f"{c.status:8s} {c.task:26s} {c.path}")
        bad = [c for c in checks if c.status != "ok"]
        print(f"{len(checks) - len(bad)} of {len(checks)} files ok in {root.resolve()}"
              + (f"; {sum(c.status == 'missing' for c in bad)} missing, "
                 f"{sum(c.status == 'mismatch' for c in bad)} mismatched" if bad else ""))
        if bad:
            names = " ".join(dict.fromkeys(c.task for c in bad))
            print(f"hint: run `scd data fetch {names}` (or copy the files by hand into {root.resolve()})",
                  file=sys.stderr)
            return 1
        return 0
    for task in [get_task(t) for t in args.tasks]:  # unknown names fail before anything is downloaded
        datafiles.fetch(task, root, args.base_url,
                        on_file=lambda status, path: print(f"{status:8s} {task.name:26s} {path}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="scd", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="task data -> prepared splits + tokenizer")
    _common(p, seed=False)
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(fn=cmd_prepare)

    p = sub.add_parser("sft", help="supervised fine-tuning of the teacher (with checkpoints) or the student")
    _common(p)
    p.add_argument("--role", choices=["teacher", "student"], required=True)
    p.add_argument("--data", required=True, help="prepared data directory")
    p.add_argument("--out", required=True, help="output directory (best/, checkpoints/, summary.json)")
    p.set_defaults(fn=cmd_sft)

    p = sub.add_parser("teacher-outputs", help="one pass of each teacher checkpoint the methods read: the logits "
                                               "and transfer-set targets that distillation reads")
    _common(p)
    p.add_argument("--data", required=True)
    p.add_argument("--teacher", required=True, help="teacher SFT output directory")
    p.add_argument("--out", required=True, help="output directory (<checkpoint>.safetensors, manifest.json)")
    p.set_defaults(fn=cmd_teacher_outputs)

    p = sub.add_parser("distill", help="distil the student-SFT model from the teacher with one method")
    _common(p)
    p.add_argument("--method", required=True, help="a method name from the config's `methods`")
    p.add_argument("--data", required=True)
    p.add_argument("--teacher", required=True, help="teacher SFT output directory")
    p.add_argument("--student", required=True, help="student SFT output directory")
    p.add_argument("--teacher-outputs", help="directory from `scd teacher-outputs` (else computed in the job)")
    p.add_argument("--eval-out", help="then evaluate the distilled student on the test split into this JSON "
                                      "(as `scd evaluate` would)")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_distill)

    p = sub.add_parser("evaluate", help="score a trained model on the test split")
    _common(p)
    p.add_argument("--model", help="a training output directory (holding best/)")
    p.add_argument("--zero-shot", choices=["teacher", "student"],
                   help="instead: that role's model before fine-tuning (pretrained weights or the seeded init)")
    p.add_argument("--name", required=True, help="leaderboard row name, e.g. teacher_sft or td")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="summary JSON; per-sample records go beside it")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("aggregate", help="evaluation summaries -> leaderboard JSON")
    p.add_argument("evals", nargs="+", help="evaluation summaries (<results>/<task>/seed<k>/eval/<model>.json)")
    p.add_argument("--methods", nargs="*", default=[], help="leaderboard row order after teacher_sft, student_sft")
    p.add_argument("--profile", default="default")
    p.add_argument("--results-dir", default="results",
                   help="the results directory the files below are in (and the MLflow store, named in the report)")
    p.add_argument("--samples", nargs="*", default=[],
                   help="per-sample records (eval/<model>.samples.jsonl) for the TFS/SFS decomposition")
    p.add_argument("--distill-summaries", nargs="*", default=[],
                   help="distillation summaries (distill/<method>/summary.json): schedules, adaptive weights, "
                        "ablation times")
    p.add_argument("--teacher-outputs-manifests", nargs="*", default=[],
                   help="teacher-output manifests (teacher_outputs/manifest.json): ablation checkpoint bytes")
    p.add_argument("--prepared-manifests", nargs="*", default=[],
                   help="prepared-data manifests (<task>/data/manifest.json): modified data and the data checks")
    p.add_argument("--ablations", help="the workflow's ablation plan as JSON (tasks, axes)")
    p.add_argument("--expect", help='the planned runs as JSON, {task: {"seeds": [...], "models": [...]}}: one '
                                    "without an evaluation summary among those given is an error")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_aggregate)

    p = sub.add_parser("reuse-evaluation", help="a shared teacher's test evaluation as another seed's row "
                                                "(shared_teacher: true; the workflow runs it)")
    p.add_argument("--source", required=True, help="the evaluation summary JSON to reuse (its samples beside it)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_reuse_evaluation)

    p = sub.add_parser("collect", help="a results directory run in parts (e.g. one task per workflow run) -> its "
                                       "leaderboard and report, from the files the workflow's aggregate rule reads, "
                                       "running nothing; --list: those files (for `git add -f`)")
    p.add_argument("--profile", default="default",
                   help="the workflow profile profiles/<name> whose configuration the parts ran with (else config "
                        "profile <name>)")
    p.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides as the parts' snakemake --config took them, e.g. tasks='[pubmedqa]' for "
                        "one part's files")
    p.add_argument("--list", action="store_true",
                   help="print the files, one per line relative to the working directory, instead of aggregating")
    p.set_defaults(fn=cmd_collect)

    p = sub.add_parser("report", help="leaderboard JSON -> HTML report")
    p.add_argument("--leaderboard", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ui-url", help="the MLflow UI the report links to (config report.ui_url; default: "
                                    "the local `mlflow ui`, scd/settings.py Report)")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("tasks", help="list the registered tasks (language, evaluation mode, metrics, groups, "
                                     "data source) and the task groups")
    p.add_argument("action", nargs="?", choices=["list"], default="list", help="list (the default)")
    p.set_defaults(fn=cmd_tasks)
    p = sub.add_parser("methods", help="list the configured methods and every registered part (presets, "
                                       "divergences, schedules, weightings, response sources) with its "
                                       "hyperparameters and reference")
    p.add_argument("action", nargs="?", choices=["list", "check"], default="list",
                   help="list (the default), or check: the property checks of the divergences named")
    p.add_argument("names", nargs="*", metavar="NAME", help="with check: registered divergence names")
    p.add_argument("--profile", default="default", help="whose configured methods to show")
    p.set_defaults(fn=cmd_methods)
    p = sub.add_parser("data", help="check the tasks' data files against their declared sha256 (verify) or "
                                    "download them from their pinned upstream commit (fetch)")
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, nargs, text in (("verify", "*", "check the files (no TASK: every task with data); exit 1 if any "
                                                 "is missing or differs"),
                                ("fetch", "+", "download the tasks' missing or differing files")):
        d = dsub.add_parser(action, help=text)
        d.add_argument("tasks", nargs=nargs, metavar="TASK", help="task names from the registry (see `scd tasks`)")
        d.add_argument("--data-dir", help="data directory (else $SCD_DATA_DIR, else the config's data_dir)")
        d.add_argument("--profile", default="default", help="whose config's data_dir to use")
        if action == "fetch":
            d.add_argument("--base-url", help="download base (else $SCD_FETCH_BASE_URL, else "
                                              "https://raw.githubusercontent.com)")
        d.set_defaults(fn=cmd_data)
    p = sub.add_parser("results-page", help="write a Markdown results page from a results directory, stamped with "
                                            "commit, date, machine and command")
    p.add_argument("--results", default="results", help="the results directory (default: results)")
    p.add_argument("--out", help="the page to write (default: docs/results/<profile>.md)")
    p.add_argument("--command", help="the command that produced the results, for the stamp")
    p.add_argument("--readme", help="also write a summary between the README's <!-- results:<profile>:start --> "
                                    "and :end --> lines")
    p.set_defaults(fn=cmd_results_page)
    p = sub.add_parser("tracking", help="sync: log the run records of finished jobs into the MLflow store (the "
                                        "workflow does at its end; run it to see jobs of a run still going)")
    p.add_argument("action", choices=["sync"])
    p.add_argument("--results", default="results", help="the results directory (default: results)")
    p.set_defaults(fn=cmd_tracking)
    p = sub.add_parser("check-config", help="validate config/config.yaml with a profile overlay")
    p.add_argument("--profile", default="default")
    p.set_defaults(fn=cmd_check_config)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    since = _records_so_far()
    try:
        try:
            rc = args.fn(args)
        finally:
            _sync_own_records(args, since)
    except (FileNotFoundError, ValueError, KeyError) as e:  # ConfigError, TaskDataError, UsageError among them
        print(f"scd {args.command}: error: {e}", file=sys.stderr)
        return 2
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
