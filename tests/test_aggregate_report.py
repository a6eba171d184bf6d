"""Leaderboard aggregation over seeds and the HTML report built from it."""
import json
import re
import statistics

import pytest

from report.details import _figure
from report.render import render
from scd.cli import main
from scd.layout import Layout
from scd.stages.aggregate import aggregate


def write_eval(f, task, model, seed, score, subs=None):
    summary = {"task": task, "model": model, "seed": seed, "metric": "accuracy", "score": score, "n": 10,
               "run_id": f"run-{task}-{model}-{seed}",
               "subdomains": {k: {"score": v, "n": 5} for k, v in (subs or {}).items()}}
    f.write_text(json.dumps(summary))
    return f


@pytest.fixture
def leaderboard(tmp_path):
    scores = {("a", "teacher_sft"): [0.9, 0.8], ("a", "student_sft"): [0.5, 0.7], ("a", "td"): [0.6, 0.6],
              ("b", "teacher_sft"): [0.2, 0.4], ("b", "student_sft"): [0.3, 0.3], ("b", "td"): [0.5, 0.7]}
    files = [write_eval(tmp_path / f"{t}-{m}-{s}.json", t, m, s, v, {"tfs": v, "sfs": 1 - v} if t == "a" else None)
             for (t, m), vals in scores.items() for s, v in enumerate(vals)]
    return aggregate(files, ["td"], "test")


def test_mean_std_n_over_seeds(leaderboard):
    c = leaderboard["cells"]["teacher_sft"]["a"]
    assert c["mean"] == pytest.approx(0.85) and c["std"] == pytest.approx(statistics.stdev([0.9, 0.8]))
    assert c["n"] == 2 and c["run_ids"] == ["run-a-teacher_sft-0", "run-a-teacher_sft-1"]
    assert leaderboard["rows"] == ["teacher_sft", "student_sft", "td"]


def test_average_is_over_per_seed_task_means(leaderboard):
    avg = leaderboard["cells"]["td"]["average"]
    assert avg["values"] == pytest.approx([(0.6 + 0.5) / 2, (0.6 + 0.7) / 2])
    assert avg["mean"] == pytest.approx(0.6)


def test_best_per_column(leaderboard):
    assert leaderboard["best"]["a"] == ["teacher_sft"]
    assert leaderboard["best"]["b"] == ["td"]
    assert leaderboard["best"]["average"] == ["td"]  # td 0.6, teacher 0.575, student 0.45


def test_subdomain_scores(leaderboard):
    sub = leaderboard["subdomains"]["a"]["student_sft"]
    assert sub["tfs"]["mean"] == pytest.approx(0.6) and sub["sfs"]["mean"] == pytest.approx(0.4)
    assert "b" not in leaderboard["subdomains"]


def test_report_shows_rows_columns_and_is_reproducible(leaderboard):
    page = render(leaderboard)
    for text in ("teacher-SFT", "student-SFT", "TD", "average", "0.850 ± 0.071", "(n=2)", "run-b-td-1", "TFS"):
        assert text in page, text
    # no statistics in this leaderboard: nothing is bold, the best mean least of all
    legend, table = page.split("<h2 id='leaderboard'>", 1)[1].split("</table>", 1)[0].split("<table", 1)
    assert "<b>" not in table and "no statistics" in legend
    # self-contained: nothing is fetched when the page opens (SVG namespace URIs are identifiers, not loads)
    assert "<script" not in page and "<link" not in page and "src=" not in page and "@import" not in page
    assert render(leaderboard) == page


def test_decomposition_identity_on_hand_made_records():
    from scd.decompose import decompose

    def recs(losses, correct=None):
        return [{"id": i, "gold_nll": v, "correct": (correct or [True] * len(losses))[i]} for i, v in enumerate(losses)]

    teacher, student = recs([0.1, 0.2, 2.0, 1.0]), recs([1.0, 0.4, 0.5, 1.0])  # TFS = {0, 1}; SFS = {2, 3} (tie)
    model = recs([0.6, 0.2, 0.7, 0.9], [False, True, True, True])
    d = decompose(teacher, student, model)
    assert d["p_tfs"] == 0.5 and d["p_sfs"] == 0.5
    assert d["tfs_deficit"] == pytest.approx(((0.6 - 0.1) + (0.2 - 0.2)) / 2)
    assert d["sfs_advantage"] == pytest.approx(((2.0 - 0.7) + (1.0 - 0.9)) / 2)
    assert d["risk_gap"] == pytest.approx(d["p_tfs"] * d["tfs_deficit"] - d["p_sfs"] * d["sfs_advantage"])
    assert d["tfs_accuracy"] == 0.5 and d["sfs_accuracy"] == 1.0
    with pytest.raises(ValueError, match="same test rows"):
        decompose(teacher, student, model[:3])


def finished_runs(results):
    """Hand-made results as the workflow lays them out (scd/layout.py), two seeds of task `t`: the evaluations,
    distillations and teacher-output manifests. Returns the files the aggregate rule declares, by argument."""
    L = Layout(results)
    files = {"eval_files": [], "samples": [], "distill_summaries": [], "teacher_outputs_manifests": []}
    for seed in (0, 1):
        L.teacher_outputs("t", seed).mkdir(parents=True)
        L.teacher_outputs_manifest("t", seed).write_text(json.dumps({"checkpoints": {
            n: {"checkpoint_bytes": 1_000_000} for n in ("ckpt-1", "ckpt-2", "ckpt-3", "best")}}))
        files["teacher_outputs_manifests"].append(L.teacher_outputs_manifest("t", seed))
        L.eval_summary("t", seed, "x").parent.mkdir(parents=True)
        for model, score in (("teacher_sft", 0.9), ("student_sft", 0.5), ("scd+aw", 0.6 + seed / 10),
                             ("scd+aw.n2", 0.5), ("scd+aw.lam0", 0.4)):
            files["eval_files"].append(write_eval(L.eval_summary("t", seed, model), "t", model, seed, score))
        for model, ckpts, sched in (("scd+aw", ["ckpt-2", "best"], ["ckpt-2", "best"]),
                                    ("scd+aw.n2", ["best"], ["best"]), ("scd+aw.lam0", ["ckpt-2", "best"], ["best"])):
            L.distill("t", seed, model).mkdir(parents=True)
            hist = {"bins": 2, "all": [3, 1], "tfs": [0, 1], "sfs": [3, 0], "mean/tfs": 0.8,
                    "mean/sfs": 0.1 + seed / 10, "stage": 0, "checkpoint": sched[0]}
            L.distill_summary("t", seed, model).write_text(json.dumps({
                "schedule": sched, "checkpoints": ckpts, "aw_histograms": [hist], "train_seconds": 10,
                "wall_seconds": 12 + seed}))
            files["distill_summaries"].append(L.distill_summary("t", seed, model))
    return files


PLAN = {"tasks": ["t"], "axes": {"granularity": {"scd+aw": {"1": "scd+aw.n2", "2": "scd+aw"}},
                                 "lam": {"scd+aw": {"0": "scd+aw.lam0", "1": "scd+aw"}}}}


def test_schedules_aw_and_ablations_reach_the_report(tmp_path):
    files = finished_runs(tmp_path)
    lb = aggregate(methods=["scd+aw"], profile="test", results_dir=str(tmp_path), ablations=PLAN, **files)
    assert lb["rows"] == ["teacher_sft", "student_sft", "scd+aw"]  # variants are not leaderboard rows
    entry = lb["schedules"]["t"]["scd+aw"]
    assert [r["schedule"] for r in entry["runs"]] == [["ckpt-2", "best"]] * 2
    assert entry["aw"][0]["hist"] == {"all": [6, 2], "tfs": [0, 2], "sfs": [6, 0]}  # summed over seeds
    assert entry["aw"][0]["mean"]["sfs"]["mean"] == pytest.approx(0.15)
    gran = lb["ablations"]["granularity"]["t"]["scd+aw"]
    assert [p["value"] for p in gran] == [1.0, 2.0]
    assert gran[1]["score"]["mean"] == pytest.approx(0.65) and gran[1]["score"]["n"] == 2
    assert gran[0]["checkpoint_bytes"] == 1_000_000 and gran[1]["checkpoint_bytes"] == 2_000_000
    assert gran[0]["seconds"] == pytest.approx(12.5)
    page = render(lb)
    for text in ("Teacher schedules", "Adaptive weights", "checkpoints N", "lambda", "scd+aw.lam0"):
        assert text in page
    # a plot in every section with data: the task's scores, the changing schedule, the AW histogram, one plot per
    # ablation axis
    assert section(page, "Scores by task").count("<svg") == len(lb["tasks"])
    assert "<svg" in section(page, "Teacher schedules") and "<svg" in section(page, "Adaptive weights")
    assert section(page, "Ablations").count("<svg") == len(PLAN["axes"]) * len(PLAN["tasks"])
    assert "trajectory-problems" not in page  # every trajectory sound: no warning
    # a run whose teacher trajectory was not in training order is listed, with the problem its job recorded
    entry["runs"][1]["trajectory_problem"] = "teacher trajectory ckpt-2, best is not in training order: 'best' (step 5)"
    warned = section(render(lb), "Teacher schedules")
    assert "trajectory-problems" in warned and "seed 1" in warned and "&#x27;best&#x27; (step 5)" in warned


def section(page: str, title: str) -> str:
    """The report's text from the heading `title` to the next <h2>."""
    return re.split(f"<h2[^>]*>{re.escape(title)}</h2>", page, maxsplit=1)[1].split("<h2", 1)[0]


def test_a_missing_declared_summary_is_one_line_naming_it(tmp_path, capsys):
    """A declared input that is not there stops the aggregation (it is not left out of the report unsaid)."""
    files = finished_runs(tmp_path)
    gone = Layout(tmp_path).distill_summary("t", 1, "scd+aw.n2")
    gone.unlink()
    with pytest.raises(FileNotFoundError, match="scd\\+aw.n2/summary.json not found"):
        aggregate(methods=["scd+aw"], profile="test", results_dir=str(tmp_path), ablations=PLAN, **files)
    out = tmp_path / "leaderboard.json"
    code = main(["aggregate", *map(str, files["eval_files"]), "--results-dir", str(tmp_path),
                 "--distill-summaries", *map(str, files["distill_summaries"]),
                 "--teacher-outputs-manifests", *map(str, files["teacher_outputs_manifests"]),
                 "--methods", "scd+aw", "--ablations", json.dumps(PLAN), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(gone) in err and not out.exists()


def test_the_summaries_read_are_the_ones_given(tmp_path):
    """Nothing is read that is not given: without the distillation summaries and manifests, no schedules, no
    ablation costs and no distillation costs; a given file that belongs to no evaluated run is an error."""
    files = finished_runs(tmp_path)
    bare = aggregate(files["eval_files"], ["scd+aw"], "test", str(tmp_path), PLAN)
    assert bare["schedules"] == {} and "seconds" not in bare["ablations"]["granularity"]["t"]["scd+aw"][0]
    assert bare["compute"]["tasks"] == {}
    full = aggregate(methods=["scd+aw"], profile="test", results_dir=str(tmp_path), ablations=PLAN, **files)
    assert full["compute"]["tasks"]["t"]["scd+aw"]["train_seconds"]["mean"] == 10
    assert {k: v for k, v in full.items() if k not in ("schedules", "ablations", "compute", "stamp")} == \
        {k: v for k, v in bare.items() if k not in ("schedules", "ablations", "compute", "stamp")}
    with pytest.raises(ValueError, match="is the file of no evaluated run"):
        aggregate(files["eval_files"][:5], ["scd+aw"], "test", str(tmp_path), PLAN,
                  distill_summaries=files["distill_summaries"])


EXPECT = {"t": {"seeds": [0, 1], "models": ["teacher_sft", "student_sft", "scd+aw", "scd+aw.n2", "scd+aw.lam0"]}}


def test_every_planned_run_is_on_the_leaderboard_or_aggregate_says_which_is_not(tmp_path, capsys):
    """The workflow's plan (--expect) against the summaries given: a method enabled but never run, or a result left
    out, stops the aggregation naming the runs, never a leaderboard without them."""
    files = finished_runs(tmp_path)
    assert aggregate(methods=["scd+aw"], results_dir=str(tmp_path), ablations=PLAN, expect=EXPECT, **files)["rows"]
    more = {"t": {"seeds": [0, 1], "models": EXPECT["t"]["models"] + ["td", "cd"]}}
    with pytest.raises(ValueError, match=r"^4 planned run\(s\) have no evaluation summary .* t seed 0 td, t seed 0 "
                                         r"cd, t seed 1 td \(and 1 more\)\. Rerun the workflow \(`snakemake"):
        aggregate(methods=["scd+aw"], results_dir=str(tmp_path), ablations=PLAN, expect=more, **files)
    out = tmp_path / "leaderboard.json"
    code = main(["aggregate", *map(str, files["eval_files"][1:]), "--results-dir", str(tmp_path),
                 "--methods", "scd+aw", "--expect", json.dumps(EXPECT), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "1 planned run(s)" in err and "t seed 0 teacher_sft" in err
    assert not out.exists()
    code = main(["aggregate", *map(str, files["eval_files"]), "--expect", "{t:", "--out", str(out)])
    assert code == 2 and "--expect is not valid JSON" in capsys.readouterr().err
    code = main(["aggregate", *map(str, files["eval_files"]), "--expect", '{"t": [0]}', "--out", str(out)])
    assert code == 2 and "is not {task:" in capsys.readouterr().err


def test_a_copied_summary_is_not_averaged_in_twice(tmp_path):
    files = finished_runs(tmp_path)
    copy = tmp_path / "copy.json"
    copy.write_text(files["eval_files"][0].read_text())
    with pytest.raises(ValueError, match="are both the evaluation of t seed 0 teacher_sft"):
        aggregate(files["eval_files"] + [copy], ["scd+aw"], results_dir=str(tmp_path))


def test_a_truncated_samples_file_names_file_line_and_the_remedy_for_it(tmp_path, capsys):
    files = finished_runs(tmp_path)
    L = Layout(tmp_path)
    for model in ("teacher_sft", "student_sft", "scd+aw"):
        rows = [{"id": i, "gold_nll": 0.1 * (i + 1), "correct": True} for i in range(4)]
        L.eval_samples("t", 0, model).write_text("".join(json.dumps(r) + "\n" for r in rows))
        files["samples"].append(L.eval_samples("t", 0, model))
    assert aggregate(methods=["scd+aw"], results_dir=str(tmp_path), **files)["decomposition"]["t"]["scd+aw"]
    cut = L.eval_samples("t", 0, "scd+aw")
    cut.write_bytes(cut.read_bytes()[:-20])
    out = tmp_path / "leaderboard.json"
    code = main(["aggregate", *map(str, files["eval_files"]), "--results-dir", str(tmp_path),
                 "--samples", *map(str, files["samples"]), "--methods", "scd+aw", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{cut}:4: malformed JSON line" in err
    assert err.rstrip().endswith("delete it and rerun the workflow, which re-evaluates that model")
    assert "scd prepare" not in err and not out.exists()
    cut.write_bytes("é".encode() * 3 + b"\xc3")  # cut inside a character
    with pytest.raises(ValueError, match="not UTF-8 text at byte 6: delete it and rerun"):
        aggregate(methods=["scd+aw"], results_dir=str(tmp_path), **files)


def test_modified_data_reaches_the_leaderboard_and_the_report(tmp_path):
    """A task prepared from data that differs from the pinned files (allowed on purpose) is named at the top of the
    report with both hashes; pinned data gives no notice. The data checks' counts travel along."""
    layout = Layout(tmp_path)
    evals, manifests = [], []
    for task in ("a", "b"):
        layout.eval_summary(task, 0, "td").parent.mkdir(parents=True)
        evals.append(write_eval(layout.eval_summary(task, 0, "td"), task, "td", 0, 0.5))
    for task, modified in (("a", {"a/x.csv": {"expected": "e" * 64, "found": "f" * 64}}), ("b", {})):
        path = layout.prepared_manifest(task)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"task": task, "data_modified": modified,
                                    "data_checks": {"duplicate_ids": {"train": 0}}}))
        manifests.append(path)
    lb = aggregate(evals, ["td"], "test", str(tmp_path), prepared_manifests=manifests)
    assert lb["data_modified"] == {"a": {"a/x.csv": {"expected": "e" * 64, "found": "f" * 64}}}
    assert set(lb["data_checks"]) == {"a", "b"}
    html = render(lb)
    assert 'id="data-modified"' in html.replace("'", '"') and "a/x.csv" in html and "f" * 64 in html
    assert 'id="data-modified"' not in render(lb | {"data_modified": {}}).replace("'", '"')


def costs_run(results):
    """Two seeds of task `t` whose jobs recorded their costs (as the stages write them), and a row from older code
    that did not (`student_sft`: its evaluation has no `training` record)."""
    L = Layout(results)
    files = {"eval_files": [], "distill_summaries": [], "teacher_outputs_manifests": []}
    for seed in (0, 1):
        L.teacher_outputs("t", seed).mkdir(parents=True)
        L.teacher_outputs_manifest("t", seed).write_text(json.dumps({
            "checkpoints": {"best": {"seconds": 30 + seed, "cache_bytes": 60e6, "checkpoint_bytes": 5e6}},
            "seconds": 30 + seed, "disk_bytes": 60e6, "peak_rss_bytes": 400e6}))
        files["teacher_outputs_manifests"].append(L.teacher_outputs_manifest("t", seed))
        L.eval_summary("t", seed, "x").parent.mkdir(parents=True)
        evals = {"teacher_sft": {"training": {"train_seconds": 100 + seed, "peak_rss_bytes": 200e6,
                                              "disk_bytes": 40e6}},
                 "student_sft": {}, "student_zero_shot": {}, "td": {}, "gkd": {}}
        for model, extra in evals.items():
            f = write_eval(L.eval_summary("t", seed, model), "t", model, seed, 0.5)
            costs = {} if model == "student_sft" else {"peak_rss_bytes": 300e6, "disk_bytes": 1e6}
            f.write_text(json.dumps(json.loads(f.read_text()) | costs | extra))
            files["eval_files"].append(f)
        for model, teacher_seconds in (("td", 0.0), ("gkd", 5.0 + seed)):
            L.distill("t", seed, model).mkdir(parents=True)
            L.distill_summary("t", seed, model).write_text(json.dumps({
                "schedule": ["best"], "checkpoints": ["best"], "train_seconds": 10 * (1 + (model == "gkd")),
                "teacher_seconds": teacher_seconds, "peak_rss_bytes": 350e6, "disk_bytes": 2e6}))
            files["distill_summaries"].append(L.distill_summary("t", seed, model))
    return files


def test_compute_costs_reach_the_leaderboard_and_the_report(tmp_path):
    lb = aggregate(methods=["td", "gkd"], profile="test", results_dir=str(tmp_path), **costs_run(tmp_path))
    comp = lb["compute"]["tasks"]["t"]
    assert comp["td"]["train_seconds"]["mean"] == 10 and comp["gkd"]["train_seconds"]["mean"] == 20
    assert comp["gkd"]["teacher_seconds"]["values"] == [5.0, 6.0] and comp["td"]["teacher_seconds"]["mean"] == 0
    assert comp["gkd"]["peak_rss_bytes"]["mean"] == 350e6  # the larger of distillation and evaluation
    assert comp["gkd"]["disk_bytes"]["mean"] == 3e6  # the distilled model and the evaluation's records
    assert comp["teacher_sft"]["train_seconds"]["mean"] == 100.5 and comp["teacher_sft"]["disk_bytes"]["mean"] == 41e6
    zero_shot = comp["student_zero_shot"]
    assert zero_shot["train_seconds"]["mean"] == 0 and zero_shot["disk_bytes"]["mean"] == 1e6
    assert "teacher_seconds" not in zero_shot and "teacher_seconds" not in comp["teacher_sft"]  # distillations only
    assert "student_sft" not in comp  # not recorded: no figure, rather than a zero
    shared = lb["compute"]["teacher_outputs"]["t"]
    assert shared["seconds"]["mean"] == 30.5 and shared["disk_bytes"]["mean"] == 60e6
    assert shared["methods"] == ["gkd", "td"]
    assert lb["compute"]["total"]["gkd"] == {"train_seconds": 20, "teacher_seconds": 5.5, "peak_rss_bytes": 350e6,
                                             "disk_bytes": 3e6}
    text = section(render(lb), "Compute")
    for figure in ("20.0", "5.5", "30.5", "350.0", "3.0", "100.5", "41.0", "teacher outputs, shared (s)",
                   "<td>1.0</td>"):  # the zero-shot row's 1 MB of records
        assert f"{figure}" in text, figure
    assert "<th class='row'>student-SFT</th>" not in text.split("<details>")[0]
    assert _figure("disk_bytes", 28e3) == "<td>0.03</td>"  # kilobytes are not 0.0 MB


def test_a_leaderboard_without_costs_says_so(leaderboard):
    assert leaderboard["compute"]["tasks"] == {}
    assert "recorded no costs" in section(render(leaderboard), "Compute")


RATES = {"teacher_sft": 0.9, "student_sft": 0.5, "td": 0.6, "scd+aw": 0.8, "cd": 0.6}


def scored_runs(results, rates=RATES, tasks=("a", "b"), seeds=(0, 1, 2), items=200, metric="accuracy"):
    """A smoke-shaped results directory: per task, seed and row, an evaluation summary and its per-sample records
    with exactly `rate` of the items right (cd's records are td's: an identical pair). Under macro_f1 the golds
    alternate between two labels and the summary's score is the task metric's macro-F1 of the records."""
    import numpy as np

    from tasks.metrics import macro_f1

    L = Layout(results)
    files = {"eval_files": [], "samples": []}
    for t_i, task in enumerate(tasks):
        for seed in seeds:
            L.eval_summary(task, seed, "x").parent.mkdir(parents=True)
            right = {}
            for r_i, (model, rate) in enumerate(rates.items()):
                hits = np.zeros(items, dtype=bool)
                hits[: round(rate * items)] = True
                right[model] = right["td"] if model == "cd" else np.random.default_rng([t_i, seed, r_i]).permutation(
                    hits)
                golds = ["yes" if metric == "accuracy" or i % 2 else "no" for i in range(items)]
                recs = [{"id": i, "subdomain": None, "pred": g if ok else {"yes": "no", "no": "yes"}[g], "gold": g,
                         "correct": bool(ok), "gold_nll": 0.5} for i, (ok, g) in enumerate(zip(right[model], golds))]
                L.eval_samples(task, seed, model).write_text("".join(json.dumps(r) + "\n" for r in recs))
                files["samples"].append(L.eval_samples(task, seed, model))
                score = float(right[model].mean()) if metric == "accuracy" else macro_f1(
                    [r["pred"] for r in recs], golds)
                f = write_eval(L.eval_summary(task, seed, model), task, model, seed, score)
                f.write_text(json.dumps(json.loads(f.read_text()) | {"metric": metric}))
                files["eval_files"].append(f)
    return files


def test_leaderboard_carries_intervals_p_values_gap_closed_and_mde(tmp_path):
    files = scored_runs(tmp_path)
    lb = aggregate(methods=["td", "scd+aw", "cd"], results_dir=str(tmp_path), resamples=300, **files)
    json.dumps(lb)  # all of it is JSON
    for col in ("a", "b", "average"):
        comp = lb["comparisons"][col]
        assert set(comp) == {"td", "scd+aw", "cd"} and "vs_td" not in comp["td"]
        better = comp["scd+aw"]["vs_td"]
        assert better["diff"] == pytest.approx(0.2) and 0.1 < better["ci95"][0] < 0.2 < better["ci95"][1]
        assert better["p_holm"] < 0.05 and better["p_holm"] >= better["p"]
        same = comp["cd"]["vs_td"]
        assert same["diff"] == 0 and same["ci95"][0] <= 0 <= same["ci95"][1] and same["p_holm"] == 1
        assert comp["td"]["vs_student_sft"]["diff"] == pytest.approx(0.1)
        assert comp["scd+aw"]["vs_student_sft"]["diff"] == pytest.approx(0.3)
        gap = lb["gap_closed"][col]["scd+aw"]
        assert gap["value"] == pytest.approx(0.75) and gap["ci95"][0] < 0.75 < gap["ci95"][1] and gap["meaningful"]
        assert lb["gap_closed"][col]["td"]["value"] == pytest.approx(0.25)
        mde = lb["mde"][col]
        assert mde["reference"] == "td" and mde["rows"] == 2
        assert mde["value"] == pytest.approx(2.8016 * mde["se"], rel=1e-4) and 0 < mde["value"] < 0.2
    # the average's interval is narrower than a task's: twice the items
    width = {c: lb["comparisons"][c]["scd+aw"]["vs_td"]["ci95"] for c in ("a", "average")}
    assert width["average"][1] - width["average"][0] < width["a"][1] - width["a"][0]
    assert lb["ranks"] == {"td": 2.5, "scd+aw": 1.0, "cd": 2.5}
    assert lb["friedman"]["n_tasks"] == 2 and lb["friedman"]["n_rows"] == 3 and lb["friedman"]["p"] is not None
    # Nemenyi over the same 2 tasks: CD = 2.343 * sqrt(3 * 4 / (6 * 2)) = 2.343 > 1.5, so no pair differs
    cd = lb["critical_difference"]
    assert cd["cd"] == pytest.approx(2.343, abs=1e-3) and (cd["n"], cd["k"], cd["alpha"]) == (2, 3, 0.05)
    assert cd["cliques"] == [["scd+aw", "cd", "td"]]
    assert lb["statistics"]["resamples"] == 300 and lb["statistics"]["omitted"] == {}
    assert lb["statistics"]["seeds"] == {"a": 3, "b": 3, "average": 3} and lb["statistics"]["items"]["a"] == 200
    again = aggregate(methods=["td", "scd+aw", "cd"], results_dir=str(tmp_path), resamples=300, **files)
    assert again["comparisons"] == lb["comparisons"]  # seeded


def test_statistics_without_a_reference_row_or_records_say_why(tmp_path):
    files = scored_runs(tmp_path / "no-td", {k: v for k, v in RATES.items() if k not in ("td", "cd")})
    lb = aggregate(methods=["scd+aw"], results_dir=str(tmp_path / "no-td"), resamples=50, **files)
    assert "vs_td" not in lb["comparisons"]["a"]["scd+aw"] and "vs_student_sft" in lb["comparisons"]["a"]["scd+aw"]
    assert lb["statistics"]["omitted"]["a"] == ["vs_td: no td row with per-sample records"]
    assert lb["mde"]["a"]["reference"] == "student_sft"
    files = scored_runs(tmp_path / "bare")
    bare = aggregate(files["eval_files"], ["td", "scd+aw", "cd"], results_dir=str(tmp_path / "bare"), resamples=50)
    assert bare["comparisons"] == {} and bare["gap_closed"] == {} and bare["mde"] == {}
    assert bare["statistics"]["omitted"]["a"] == ["no per-sample records for a seed 0 td (and 14 more)"]
    assert bare["statistics"]["omitted"]["average"] == ["needs every task's statistics (see the tasks' reasons)"]
    assert bare["ranks"]["scd+aw"] == 1.0  # ranks need only the scores


def test_per_sample_records_that_disagree_are_one_line(tmp_path, capsys):
    files = scored_runs(tmp_path, tasks=("a",), seeds=(0,), items=20)
    L = Layout(tmp_path)
    edited = L.eval_samples("a", 0, "scd+aw")
    original = edited.read_text()
    lines = original.splitlines()
    lines[0] = json.dumps(json.loads(lines[0]) | {"pred": "maybe"})
    edited.write_text("\n".join(lines) + "\n")
    out = tmp_path / "leaderboard.json"
    code = main(["aggregate", *map(str, files["eval_files"]), "--results-dir", str(tmp_path),
                 "--samples", *map(str, files["samples"]), "--methods", "td", "scd+aw", "cd", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and not out.exists()
    assert f"{edited} scores accuracy 0.750000, but its evaluation summary" in err and "0.800000" in err
    stale = L.eval_samples("a", 0, "cd")
    stale.write_text("".join(json.dumps(json.loads(x) | {"id": i + 100}) + "\n"
                             for i, x in enumerate(stale.read_text().splitlines())))
    edited.write_text(original)
    with pytest.raises(ValueError, match=f"^{re.escape(str(stale))} holds other test items than .*td.samples.jsonl: "
                                         "one of them is stale or was edited; delete the stale one and rerun"):
        aggregate(methods=["td", "scd+aw", "cd"], results_dir=str(tmp_path), resamples=20, **files)


def test_a_corpus_metric_headline_is_recomputed_on_each_resample(tmp_path):
    """A task whose headline metric is macro-F1: the point differences are those of the summaries' scores (mean
    over seeds of each seed's macro-F1), not of accuracies."""
    files = scored_runs(tmp_path, metric="macro_f1", tasks=("a",))
    lb = aggregate(methods=["td", "scd+aw", "cd"], results_dir=str(tmp_path), resamples=100, **files)
    cells = lb["cells"]
    diff = lb["comparisons"]["a"]["scd+aw"]["vs_td"]["diff"]
    assert diff == pytest.approx(cells["scd+aw"]["a"]["mean"] - cells["td"]["a"]["mean"])
    assert diff != pytest.approx(0.2)  # the accuracies' difference
    assert lb["comparisons"]["a"]["scd+aw"]["vs_td"]["ci95"][0] > 0
    assert lb["comparisons"]["a"]["cd"]["vs_td"]["p_holm"] == 1


def test_the_report_opens_with_conclusions_and_a_forest_plot_that_call_only_significant_differences_wins(tmp_path):
    files = scored_runs(tmp_path)
    lb = aggregate(methods=["td", "scd+aw", "cd"], results_dir=str(tmp_path), resamples=300, **files)
    page = render(lb)
    conclusions = page.split("<h2 id='conclusions'>Conclusions</h2>", 1)[1].split("<h2", 1)[0]
    assert page.index("id='conclusions'") < page.index("<table")  # before the leaderboard
    assert conclusions.count("<svg") == 3 + 1  # a forest plot for the average and each task, the CD diagram
    better, same = lb["comparisons"]["average"]["scd+aw"]["vs_td"], lb["comparisons"]["average"]["cd"]["vs_td"]
    lo, hi = better["ci95"]
    assert (f"<b>SCD+AW</b> vs TD: {better['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}], significant" in conclusions)
    assert same["diff"] == 0 and "CD vs TD: +0.000 [+0.000, +0.000], not significant" in conclusions  # no win
    assert "<b>CD</b>" not in conclusions and "closes 75% of the student-SFT to teacher-SFT gap" in conclusions
    assert f"Detectable here (80% power): {lb['mde']['average']['value']:.3f}" in conclusions
    bare = render({k: v for k, v in lb.items() if k not in ("comparisons", "gap_closed", "mde")})
    assert "no comparisons with intervals" in bare


def test_critical_difference_diagram_draws_every_method_the_interval_and_the_bars():
    from scd.plots import cd_diagram_svg

    ranks = {"TD": 3.2, "SCD+AW": 1.5, "CD": 2.8, "SCD": 2.1, "GKD": 4.9, "DistiLLM": 5.5, "SeqKD": 6.0}
    cliques = [["SCD+AW", "SCD", "CD", "TD"], ["TD", "GKD"], ["GKD", "DistiLLM", "SeqKD"]]
    svg = cd_diagram_svg(ranks, 2.01, cliques, "Average rank over 20 tasks")
    width = re.search(r'<svg[^>]* width="([0-9.]+)pt"', svg)
    assert width and float(width.group(1)) * 4 / 3 <= 1000  # points to CSS pixels
    for name, rank in ranks.items():  # matplotlib keeps each text as a comment beside its glyphs
        assert f"({rank:.2f}) {name} -->" in svg or f"{name} ({rank:.2f}) -->" in svg, name
    assert "<!-- (1.50) SCD+AW -->" in svg and "<!-- SeqKD (6.00) -->" in svg  # the better half on the left
    assert "<!-- CD = 2.01 -->" in svg and "<!-- Average rank over 20 tasks -->" in svg
    thick = re.findall(r'stroke-width: 3(?:\.0)?;', svg)
    assert len(thick) == len(cliques)
    assert "CD = " not in cd_diagram_svg(ranks, None, [], "no interval")
    with pytest.raises(ValueError, match="at least one method"):
        cd_diagram_svg({}, 1.0, [], "empty")
