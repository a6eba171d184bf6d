"""The HTML report as a reader meets it: the order of its parts, significance marks, the majority-class flag,
display names, links to MLflow, and the page in a real browser (headless Chromium)."""
import json
import re
import shutil
import sqlite3
import subprocess
from urllib.parse import quote, unquote

import numpy as np
import pytest
from conftest import unavailable

from report import render as render_module
from report.links import Links, experiment_id
from report.render import render
from scd.checkout import git_state
from scd.cli import main as cli_main
from scd.config import ConfigError, load_config, report_settings
from scd.distill import parts, plugins
from scd.layout import Layout
from scd.settings import Report
from scd.stages.aggregate import aggregate

GOLDS = ["yes" if i % 10 < 7 else "no" for i in range(100)]  # 70% "yes": the majority-class rate is 0.7


def write_runs(results, plan: dict, seeds=(0, 1, 2), golds=GOLDS):
    """Per task, seed and model an evaluation summary and its per-sample records. `plan[task][model]`: a rate
    (that share of the items right, chosen at random per seed) or "majority" (always the most frequent answer)."""
    L = Layout(results)
    files = {"eval_files": [], "samples": []}
    other = {"yes": "no", "no": "yes"}
    for t_i, (task, rows) in enumerate(plan.items()):
        for seed in seeds:
            L.eval_summary(task, seed, "x").parent.mkdir(parents=True, exist_ok=True)
            for r_i, (model, rate) in enumerate(rows.items()):
                if rate == "majority":
                    preds = ["yes"] * len(golds)
                else:
                    right = np.zeros(len(golds), dtype=bool)
                    right[: round(rate * len(golds))] = True
                    right = np.random.default_rng([t_i, seed, r_i]).permutation(right)
                    preds = [g if ok else other[g] for g, ok in zip(golds, right)]
                recs = [{"id": i, "subdomain": None, "pred": p, "gold": g, "correct": p == g, "gold_nll": 0.5}
                        for i, (p, g) in enumerate(zip(preds, golds))]
                L.eval_samples(task, seed, model).write_text("".join(json.dumps(r) + "\n" for r in recs))
                L.eval_summary(task, seed, model).write_text(json.dumps({
                    "task": task, "model": model, "seed": seed, "metric": "accuracy", "n": len(golds),
                    "score": sum(r["correct"] for r in recs) / len(recs), "run_id": f"run-{task}-{model}-{seed}",
                    "subdomains": {}}))
                files["samples"].append(L.eval_samples(task, seed, model))
                files["eval_files"].append(L.eval_summary(task, seed, model))
    return files


RATES = {"teacher_sft": 0.95, "student_zero_shot": 0.3, "student_sft": 0.5, "td": 0.6, "scd+aw": 0.8, "cd": 0.6,
         "rkl": 0.4}


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """Task `a`: SCD+AW far above TD, RKL far below, CD equal; task `flat`: every trained student answers "yes"."""
    results = tmp_path_factory.mktemp("results")
    flat = {m: ("majority" if m not in ("teacher_sft", "student_zero_shot") else r) for m, r in RATES.items()}
    files = write_runs(results, {"a": RATES, "flat": flat})
    return aggregate(methods=["td", "scd+aw", "cd", "rkl"], results_dir=str(results), resamples=300, **files)


def leaderboard_rows(page: str) -> dict[str, str]:
    """Row name -> the row's HTML in the leaderboard table."""
    table = page.split("<h2 id='leaderboard'>", 1)[1].split("</table>", 1)[0]
    out = {}
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("<tbody>", 1)[1]):
        name = re.sub(r"<[^>]+>", "", tr.split("</th>", 1)[0])
        out[name] = tr
    return out


def test_majority_rate_comes_from_the_test_golds_and_flags_the_task(board):
    assert board["majority"]["a"] == {"label": "yes", "rate": 0.7, "n": 100}  # 70 of the 100 golds
    page = render(board)
    notice = page.split("id='not-informative'", 1)[1].split("</div>", 1)[0]
    assert "flat: every trained student row" in notice and "0.700" in notice and "(yes, 100 items)" in notice
    assert "<li>a:" not in notice  # students differ on `a`: it is no tie
    head = page.split("<h2 id='leaderboard'>", 1)[1].split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert head.count("not informative") == 1 and head.index("not informative") > head.index(">flat<")
    conclusions = page.split("<h2 id='conclusions'>", 1)[1].split("<h2 id='leaderboard'>", 1)[0]
    block = conclusions.split("<h3>flat</h3>", 1)[1].split("</div></div>", 1)[0]
    assert "Not informative at this model size" in block and "<svg" not in block
    assert conclusions.count("<svg") == 2 + 1  # the average's and a's forest plots only, and the ranks' CD diagram
    # one student row off the majority rate on one seed: the task is a task again
    shifted = json.loads(json.dumps(board))
    shifted["cells"]["cd"]["flat"]["values"][0] = 0.69
    assert "not-informative" not in render(shifted)


def test_bold_marks_only_student_rows_significantly_off_td(board):
    rows = leaderboard_rows(render(board))
    assert "<b>" in rows["SCD+AW"] and "▲" in rows["SCD+AW"]  # +0.2 over TD
    assert "<b>" in rows["rkl"] and "▼" in rows["rkl"]  # -0.2
    assert "<b>" not in rows["CD"]  # the same records as TD: no difference
    assert "<b>" not in rows["teacher-SFT"]  # the best mean, and a reference: never bold
    assert "<b>" in rows["TD"] and "▲" in rows["TD"]  # TD's own mark: +0.1 over student-SFT
    assert all("<b>" not in rows[r] for r in ("student-SFT", "student (zero-shot)"))
    assert all("<b>" not in tr.split("</td>")[-3] for tr in rows.values())  # nothing on the flat task
    # both conditions: a Holm p below 0.05 with an interval that includes 0, or the converse, is no mark
    lb = json.loads(json.dumps(board))
    lb["comparisons"]["a"]["scd+aw"]["vs_td"] |= {"ci95": [-0.01, 0.4], "p_holm": 0.001}
    lb["comparisons"]["a"]["rkl"]["vs_td"] |= {"p_holm": 0.2}
    rows = leaderboard_rows(render(lb))
    assert "<b>" not in rows["SCD+AW"].split("</td>")[0] and "<b>" not in rows["rkl"].split("</td>")[0]
    legend = render(board).split("<h2 id='leaderboard'>", 1)[1].split("<table", 1)[0]
    assert "Holm-adjusted p &lt; 0.05 and a 95% interval that excludes 0" in legend and "student-SFT" in legend


def test_rows_carry_the_registry_display_names(tmp_path):
    plugins.load_plugins(quiet=True)
    shown = [m for m, _ in parts.METHODS.items() if parts.METHODS.meta(m).get("display")]
    plain = [m for m, _ in parts.METHODS.items() if not parts.METHODS.meta(m).get("display")]
    methods = ["td", "scd+aw", "sym_kl", *shown[:2], *plain[:1]]
    files = write_runs(tmp_path, {"a": {"teacher_sft": 0.9, "student_sft": 0.5, **dict.fromkeys(methods, 0.6)}},
                       seeds=(0,))
    page = render(aggregate(files["eval_files"], methods, results_dir=str(tmp_path)))
    names = set(leaderboard_rows(page))
    assert {"TD", "SCD+AW", "sym_kl", *(parts.METHODS.meta(m)["display"] for m in shown[:2]), *plain[:1]} <= names
    assert not any(re.fullmatch(r"[A-Z_]+", n) and "_" in n for n in names)  # no SYM_KL, SKEW_KL


def test_the_page_opens_with_the_stamp_and_contents_then_conclusions_leaderboard_details(board):
    commit, _ = git_state()
    assert board["stamp"]["commit"] == commit and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC",
                                                                board["stamp"]["date"])
    page = render(board)
    stamp = page.split("<header class='stamp'>", 1)[1].split("</header>", 1)[0]
    assert commit[:12] in stamp and board["stamp"]["machine"] in stamp and "default" in stamp
    order = ["<header class='stamp'>", "<nav class='toc'>", "<h2 id='conclusions'>", "<h2 id='leaderboard'>",
             "<section id=\"details\">"]
    assert [page.index(s) for s in order] == sorted(page.index(s) for s in order)
    details = page.split("<section id=\"details\">", 1)[1]
    anchors = re.findall(r"href='#([\w-]+)'", page.split("<nav class='toc'>", 1)[1].split("</nav>", 1)[0])
    assert all(f"id=\"{a}\"" in page or f"id='{a}'" in page for a in anchors) and len(anchors) >= 10
    assert details.count("<details>") >= len(anchors) - 3 and "<details open" not in details  # folded
    old = {k: v for k, v in board.items() if k != "stamp"}  # a leaderboard of older code
    assert "not recorded" in render(old).split("</header>", 1)[0]


def test_cells_and_plots_link_to_their_mlflow_runs(board):
    page = render(board, ui_url="http://mlflow.example:8080/", experiment="7")
    base = "http://mlflow.example:8080/#/experiments/7/runs?searchFilter="
    rows = leaderboard_rows(page)
    cell = re.findall(r"<td[^>]*>(.*?)</td>", rows["SCD+AW"])[0]
    href = re.search(r"href='([^']+)'", cell).group(1)
    assert href.startswith(base) and unquote(href[len(base):]) == (
        "tags.`scd.stage` = 'evaluate' and tags.`scd.profile` = 'default' and tags.`scd.task` = 'a' and "
        "tags.`scd.method` = 'scd+aw'")
    assert all(td.startswith("<a href='" + base) for tr in rows.values() for td in re.findall(r"<td[^>]*>(.*?)</td>",
                                                                                             tr))
    for m in re.finditer("<svg", page):  # every plot inside a link
        before = page[: m.start()]
        assert before.rfind("<a href='" + base) > before.rfind("</a>")
    before, runs = page.split("<div id=\"runs\">", 1)
    one = "tags.`scd.run_id` = 'run-a-td-2'"
    assert base + quote(one, safe="") in runs  # one link per seed's run
    assert "run-a-td-2" not in unquote(before)  # no wall of run ids
    # without a store to read the experiment from: the UI's experiment list, the search in the link's title
    bare = render(board, experiment=None)
    assert f"href='{Report().ui_url}/#/experiments'" in bare and "MLflow search: tags.`scd.run_id` = " in bare


def test_the_experiment_id_is_read_from_the_results_directory_store(tmp_path):
    assert experiment_id(tmp_path) is None  # no store
    db = Layout(tmp_path).mlflow_db()
    db.write_bytes(b"not a database")
    assert experiment_id(tmp_path) is None
    db.unlink()
    with sqlite3.connect(db) as con:  # MLflow's tables, the columns read
        con.executescript("CREATE TABLE experiments (experiment_id INTEGER, name TEXT);"
                          "CREATE TABLE runs (run_uuid TEXT, experiment_id INTEGER, start_time INTEGER);"
                          "CREATE TABLE tags (key TEXT, value TEXT, run_uuid TEXT);"
                          "INSERT INTO experiments VALUES (0, 'Default'), (3, 'scd-bench'), (5, 'mine');")
    assert experiment_id(tmp_path) == "3"  # by the default experiment's name
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO runs VALUES ('r1', 5, 1)")
        con.execute("INSERT INTO tags VALUES ('scd.results_dir', ?, 'r1')", (str(tmp_path.resolve()),))
    assert experiment_id(tmp_path) == "5"  # the experiment this results directory's runs are in


def test_the_ui_address_is_a_config_key_with_one_default():
    assert report_settings(load_config("smoke")).ui_url == Report().ui_url == "http://127.0.0.1:5000"
    cfg = load_config("smoke", {"report": {"ui_url": "http://mlflow.lab:5000"}})
    assert report_settings(cfg).ui_url == "http://mlflow.lab:5000"
    with pytest.raises(ConfigError, match=r"report\.ui_url is invalid: 'mlflow\.lab' does not match"):
        load_config("smoke", {"report": {"ui_url": "mlflow.lab"}})
    assert Links().ui_url == Report().ui_url


def test_the_critical_difference_diagram_is_drawn_from_the_leaderboard(board):
    lb = board | {"critical_difference": {"cd": 1.23, "alpha": 0.05, "n": 2, "cliques": [["td", "cd"]]}}
    text = render_module.rank_block(lb)
    assert "Critical difference 1.23" in text and "{TD, CD}" in text
    svg = text[text.index("<svg"):text.index("</svg>")]
    for name in ("TD", "SCD+AW", "CD", "rkl"):  # every ranked row by its display name
        assert name in svg
    none = board | {"critical_difference": {"cd": None, "alpha": 0.05, "n": 1, "cliques": None, "reason": "one task"}}
    assert "Critical difference" not in render_module.rank_block(none)
    assert "Critical difference" not in render_module.rank_block(
        {k: v for k, v in board.items() if k != "critical_difference"})


def test_scd_report_links_to_the_ui_address_it_is_given(board, tmp_path):
    (tmp_path / "lb.json").write_text(json.dumps(board))
    assert cli_main(["report", "--leaderboard", str(tmp_path / "lb.json"), "--out", str(tmp_path / "r.html"),
                     "--ui-url", "http://mlflow.lab:5000"]) in (0, None)
    assert "href='http://mlflow.lab:5000/#/experiments" in (tmp_path / "r.html").read_text()


# The page in a browser: whatever the report holds must load without errors and fit 1280 px, every detail open.
PROBE_HEAD = ("<script>window.__errors = []; window.addEventListener('error', e => window.__errors.push("
              "String(e.message)));</script>")
PROBE_END = ("<script>document.querySelectorAll('details').forEach(d => { d.open = true; });"
             "document.body.setAttribute('data-scroll-width', document.documentElement.scrollWidth);"
             "document.body.setAttribute('data-errors', JSON.stringify(window.__errors));</script>")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    unavailable("chromium not installed (Debian: apt-get install chromium; .ci/run installs it)")


def test_the_report_loads_in_headless_chromium_without_errors_and_fits_1280_px(tmp_path):
    browser = chromium()
    plugins.load_plugins(quiet=True)
    presets = [m for m, _ in parts.METHODS.items()]  # the registry's presets: long display names, many rows
    rates = {"teacher_sft": 0.9, "student_zero_shot": 0.3, "student_sft": 0.5, "td": 0.6, "scd+aw": 0.7,
             **{m: 0.55 for m in presets}}
    files = write_runs(tmp_path / "results", {"a_task_with_a_long_name": rates, "b": rates}, seeds=(0, 1))
    lb = aggregate(methods=["td", "scd+aw", *presets], results_dir=str(tmp_path / "results"), resamples=50, **files)
    page = render(json.loads(json.dumps(lb)))
    html_file = tmp_path / "report.html"
    html_file.write_text(page.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_END + "</body>"),
                         encoding="utf-8")
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--window-size=1280,900", "--dump-dom", html_file.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [] and 'data-errors="[]"' in dom, (console, dom[-500:])
    width = int(re.search(r'data-scroll-width="(\d+)"', dom).group(1))
    assert 0 < width <= 1280
    conclusions = dom.split('id="conclusions"', 1)[1].split('id="leaderboard"', 1)[0]
    assert conclusions.count("<svg") == 3 + 1  # the forest plots (average, and each task), the CD diagram


def test_one_seed_is_said_where_the_intervals_are_read(board):
    assert "One seed on" not in render_module.conclusions_section(board)
    one = board | {"statistics": board["statistics"] | {"seeds": {"a": 1, "average": 3}}}
    text = render_module.conclusions_section(one)
    assert "One seed on a: the intervals there cover the test items only" in text
