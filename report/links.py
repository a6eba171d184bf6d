"""Links from the report to the MLflow UI (config `report.ui_url`, default `mlflow ui`'s local address).

The report is written before the workflow's end logs the jobs' run records into MLflow, so a link cannot name the
MLflow run id; it names the run by its tags instead: the experiment's runs table filtered on `scd.run_id` (one
run), or on task, method and stage (a cell's runs, one per seed). The experiment's id is read from the results
directory's own SQLite store (the workflow creates it when it starts); without one (a store elsewhere, e.g. an
MLflow server) a link opens the UI's experiment list and its title carries the filter to paste.
"""
from __future__ import annotations

import html
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from scd.layout import Layout
from scd.settings import Report, Tracking


def experiment_id(results_dir: str | Path) -> str | None:
    """The MLflow experiment of the runs of `results_dir` (tag scd.results_dir), else the one named as the
    configuration's default experiment, in the results directory's SQLite store; None without one."""
    db = Layout(results_dir).mlflow_db()
    if not db.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{db.resolve()}?mode=ro", uri=True) as con:
            row = con.execute(
                "SELECT r.experiment_id FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE t.key = "
                "'scd.results_dir' AND t.value = ? ORDER BY r.start_time DESC LIMIT 1",
                (str(Path(results_dir).resolve()),)).fetchone() or con.execute(
                "SELECT experiment_id FROM experiments WHERE name = ?", (Tracking().experiment,)).fetchone()
    except sqlite3.Error:  # not a store, or one of another MLflow schema: links without the experiment
        return None
    return str(row[0]) if row else None


@dataclass(frozen=True)
class Links:
    ui_url: str = Report().ui_url
    experiment: str | None = None
    profile: str | None = None

    def url(self, filter_: str) -> str:
        base = self.ui_url.rstrip("/")
        if self.experiment is None:
            return f"{base}/#/experiments"
        return f"{base}/#/experiments/{quote(self.experiment)}/runs?searchFilter={quote(filter_, safe='')}"

    def runs(self, stage: str = "evaluate", **tags) -> str:
        """The search filter of the runs with these tags (scd.<key>: task, method, seed, run_id) of the stage, in
        this profile."""
        tags = {"stage": stage, **({"profile": self.profile} if self.profile else {}), **tags}
        return " and ".join(f"tags.`scd.{k}` = '{v}'" for k, v in tags.items() if v is not None)

    @staticmethod
    def run(run_id: str) -> str:
        """The search filter of one run, by the id its summary gives."""
        return f"tags.`scd.run_id` = '{run_id}'"

    def a(self, filter_: str, text: str, title: str = "") -> str:
        """A link (`text` is HTML already) to the runs `filter_` finds; without the experiment, the title carries
        the filter to paste into the UI's search box."""
        hint = "; ".join(t for t in (title, f"MLflow search: {filter_}" if self.experiment is None else "") if t)
        return (f"<a href='{html.escape(self.url(filter_))}'" + (f" title='{html.escape(hint)}'" if hint else "")
                + f">{text}</a>")
