"""What a job cost, for its summary: its peak resident memory and the bytes of what it wrote (the report's compute
table, scd/stages/aggregate.py)."""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (getrusage's ru_maxrss: kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def disk_bytes(*paths: Path) -> int:
    """The bytes of these files, and of every file under these directories (missing paths count 0)."""
    total = 0
    for p in map(Path, paths):
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total


class Stopwatch:
    """Seconds spent inside the wrapped methods of an object, summed (e.g. a live teacher's forward passes)."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, obj, *names: str) -> "Stopwatch":
        """Time `obj.<name>(...)` for each name, on this object only; returns the stopwatch."""
        for name in names:
            setattr(obj, name, self._timed(getattr(obj, name)))
        return self

    def _timed(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed
