"""Oracle rows in the leaderboard: the best one-checkpoint schedule per task and every other row's regret
against it, checked on hand-computed cases; and the report's table of them."""
import json

import pytest

from report.render import render
from scd.stages.aggregate import aggregate, oracle_results

PLAN = {"t": {"cd": {"fixed": ["cd.ckpt1", "cd.ckpt2", "td"], "reversed": "cd.reversed"}}}
SCORES = {  # model -> score per seed 0, 1, 2
    "teacher_sft": [0.90, 0.90, 0.90],
    "cd": [0.50, 0.60, 0.55],            # mean 0.55
    "cd.ckpt1": [0.70, 0.62, 0.66],      # mean 0.66: the best
    "cd.ckpt2": [0.66, 0.66, 0.66],      # mean 0.66 too: a tie goes to the first in plan order
    "td": [0.60, 0.60, 0.60],
    "cd.reversed": [0.40, 0.40, 0.40],
    "scd": [0.65, 0.60, 0.62],           # per seed 0.05, 0.02, 0.04 below cd.ckpt1
    "scd+aw": [0.70, 0.62],              # seeds 0 and 1 only, equal to cd.ckpt1 there
}
RUNS = [{"task": "t", "seed": s, "model": m, "score": v} for m, vals in SCORES.items() for s, v in enumerate(vals)]


def test_best_oracle_row_and_regret_on_a_hand_case():
    out = oracle_results(RUNS, PLAN, list(SCORES))["t"]
    assert out["rows"] == ["cd", "cd.ckpt1", "cd.ckpt2", "td", "cd.reversed"]
    assert out["best_row"] == "cd.ckpt1" and out["best_mean"] == pytest.approx(0.66)
    assert set(out["regret"]) == {"scd", "scd+aw"}  # neither the candidates nor the reference rows
    scd = out["regret"]["scd"]
    assert scd["values"] == pytest.approx([0.05, 0.02, 0.04]) and scd["seeds"] == [0, 1, 2]
    assert scd["mean"] == pytest.approx(0.11 / 3)
    # sample std by hand: deviations 0.04/3, -0.05/3, 0.01/3 -> sqrt((0.0016 + 0.0025 + 0.0001) / 9 / 2)
    assert scd["std"] == pytest.approx((0.0042 / 18) ** 0.5)
    # an identical pair has no regret, over the seeds both ran
    assert out["regret"]["scd+aw"] == pytest.approx({"mean": 0.0, "std": 0.0, "n": 2, "values": [0.0, 0.0],
                                                     "seeds": [0, 1]})


def test_no_plan_or_no_oracle_runs_gives_no_entry():
    assert oracle_results(RUNS, {}, list(SCORES)) == {}
    assert oracle_results([r for r in RUNS if r["model"] in ("scd", "teacher_sft")], PLAN, list(SCORES)) == {}


def test_leaderboard_and_report_carry_the_oracle_table(tmp_path):
    files = []
    for r in RUNS:
        f = tmp_path / f"{r['model']}-{r['seed']}.json"
        f.write_text(json.dumps(r | {"metric": "accuracy", "n": 10, "run_id": f"run-{r['model']}-{r['seed']}",
                                    "subdomains": {}}))
        files.append(f)
    rows = [m for m in SCORES if m != "teacher_sft"]
    lb = aggregate(files, rows, "test", ablations={"oracles": PLAN})
    assert lb["oracle"]["t"]["best_row"] == "cd.ckpt1"
    assert lb["oracle"]["t"]["regret"]["scd"]["mean"] == pytest.approx(0.11 / 3)
    page = render(json.loads(json.dumps(lb)))  # as the report reads it back from leaderboard.json
    table = page.split('id="oracle"')[1].split("<h2")[0]
    assert "CD.ckpt1 (best)" in table and "+0.037 ± 0.015" in table
    assert "No oracle rows" in render(aggregate(files, rows, "test"))
