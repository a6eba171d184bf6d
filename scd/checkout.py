"""The project's checkout: which commit the code is, and whether its tracked files were changed since."""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=None)
def git_state(root: str | Path = REPO_ROOT) -> tuple[str, str]:
    """(commit, dirty) of the checkout at `root`: `git rev-parse HEAD`, and "true"/"false" for uncommitted changes
    to tracked files (`git status --porcelain --untracked-files=no`); "unknown" for either when there is no git or
    `root` is not a repository. Never raises."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit or not commit.strip():
        return "unknown", "unknown"
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit.strip(), "unknown" if status is None else str(bool(status.strip())).lower()
