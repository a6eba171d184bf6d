"""`ruff check .` is clean (its settings: pyproject.toml's [tool.ruff]); CI runs it through this test."""
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import unavailable

REPO = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    if shutil.which("ruff") is None and subprocess.run([sys.executable, "-m", "ruff", "--version"],
                                                       capture_output=True).returncode != 0:
        unavailable("ruff is not installed: pip install -e '.[test]'")
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
