"""What a benchmark measured, as a record the performance page is generated from.

Every benchmark prints its numbers; with `--save DIR` it also writes `DIR/<benchmark>.json`: the figures, each
with its target if it has one, the command that measured them and a stamp (commit, date, machine). The page
(`python -m scd.benchmarks.page`) is rendered from these records only, so a figure in the docs is always one some
command printed, on a machine and commit the page names.
"""
from __future__ import annotations

import argparse
import json
import operator
import shlex
import sys
from pathlib import Path

from report.results_page import stamp
from scd.data import write_json

OPS = {"<=": operator.le, ">=": operator.ge}


def add_save_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--save", type=Path, metavar="DIR",
                    help="also write the figures as DIR/<benchmark>.json, for the performance page")


def figure(value: float, unit: str, what: str, target: str | None = None, headline: bool = False) -> dict:
    """One measured number; `target` like "<= 2" or ">= 2" (value against bound) if it has one. Figures with a
    target, and those marked `headline`, go into the README's table."""
    out = {"value": value, "unit": unit, "what": what} | ({"headline": True} if headline else {})
    if target is not None:
        op, bound = target.split()
        out |= {"target": target, "met": bool(OPS[op](value, float(bound)))}
    return out


def command_line(module: str, argv: list[str] | None) -> str:
    """The command as a reader would type it: a path outside the working directory (a reference checkout, a
    scratch directory) is shown as <dir>, since it only names where this machine kept it."""
    args = sys.argv[1:] if argv is None else argv
    shown = [_portable(a) for a in args]
    return " ".join(["python", "-m", module, *(a if a == "<dir>" else shlex.quote(a) for a in shown)])


def _portable(arg: str) -> str:
    path = Path(arg)
    if path.is_absolute() and not path.resolve().is_relative_to(Path.cwd().resolve()):
        return "<dir>"
    return arg


def portable_command(command: str) -> str:
    """A saved command with its machine-specific paths shown as <dir> (records saved before this rule)."""
    return " ".join(_portable(a) for a in command.split(" "))


def save(directory: Path | None, name: str, module: str, argv: list[str] | None, figures: dict[str, dict],
         notes: str = "") -> None:
    """Write the record when `--save` was given (`directory` not None)."""
    if directory is None:
        return
    command = command_line(module, argv)
    record = {"benchmark": name, "command": command, "stamp": dict(stamp(command)), "figures": figures,
              "notes": notes}
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / f"{name}.json", record)
    print(f"saved {directory / f'{name}.json'}")


def load(directory: Path) -> list[dict]:
    """Every record in `directory`, by benchmark name; a file that is not a record is named and refused."""
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a benchmark record ({e}); rerun its benchmark with --save") from None
        if not isinstance(record, dict) or not {"benchmark", "command", "stamp", "figures"} <= record.keys():
            raise ValueError(f"{path}: not a benchmark record (benchmark, command, stamp, figures); rerun its "
                             "benchmark with --save")
        record["command"] = portable_command(record["command"])
        record["stamp"]["command"] = record["command"]
        out.append(record)
    return out
