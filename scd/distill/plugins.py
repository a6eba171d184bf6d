"""Plugin loading: the core method parts, every module of the `baselines` package, and installed packages that
declare the `scd_bench.baselines` entry point group, imported once so that their registrations take effect."""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil

import scd.distill.divergences  # noqa: F401  (core parts: the `none` divergence,
import scd.distill.responses  # noqa: F401   the gold response source,
import scd.distill.schedules  # noqa: F401   the teacher schedules,
import scd.distill.weighting  # noqa: F401   the sample weightings)

PLUGIN_PACKAGE = "baselines"
ENTRY_POINT_GROUP = "scd_bench.baselines"
_loaded = False


def load_plugins() -> None:
    """Import every baseline module and entry-point plugin (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = importlib.import_module(PLUGIN_PACKAGE)
    for mod in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{PLUGIN_PACKAGE}.{mod.name}")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
