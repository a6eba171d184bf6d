"""Plugin loading: the core method parts, every module of the `baselines` package, and installed packages that
declare the `scd_bench.baselines` entry point group, imported once so that their registrations take effect.

A plugin that fails to import (a bug in it, a missing dependency, an entry point naming a module or attribute that
does not exist) does not stop the others: it is recorded as broken (`broken_plugins`), announced in one line on
stderr naming the entry point and its package, and only what needs its parts fails (`explain` adds the broken
plugins to an unknown-name error). `plugins()` lists every one, loaded or not, with its package and version, for
the code fingerprint of the jobs that use them and for MLflow.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import pkgutil
import sys
from dataclasses import dataclass

import scd.distill.divergences  # noqa: F401  (core parts: the `none` divergence,
import scd.distill.responses  # noqa: F401   the gold response source,
import scd.distill.schedules  # noqa: F401   the teacher schedules,
import scd.distill.weighting  # noqa: F401   the sample weightings)

PLUGIN_PACKAGE = "baselines"
ENTRY_POINT_GROUP = "scd_bench.baselines"
_loaded = False
_plugins: list[Plugin] = []


@dataclass(frozen=True)
class Plugin:
    name: str             # the entry point's name, or baselines.<module> for the bundled ones
    target: str           # what it imports: the entry point's value, or the module
    package: str          # the distribution that declares it ("" when unknown; scd-bench for baselines/)
    version: str          # that distribution's version ("unknown" when there is none)
    module: str           # the top-level module its parts live under
    error: str | None = None  # why it did not load (type and message), None when it did

    @property
    def entry_point(self) -> bool:
        return not self.name.startswith(f"{PLUGIN_PACKAGE}.")

    def line(self) -> str:
        """One line naming the plugin, what it imports, its package and, when broken, why."""
        where = (f"entry point {self.name} = {self.target} (group {ENTRY_POINT_GROUP}"
                 f"{f', package {self.package} {self.version}' if self.package else ''})" if self.entry_point
                 else f"module {self.target}")
        if self.error is None:
            return f"plugin {where}"
        return f"plugin {where} failed to load: {self.error}; its methods are unavailable"


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".replace("\n", " ")


def _dist(ep) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "", "unknown"
    return dist.metadata["Name"] or "", dist.version or "unknown"


def _own_version() -> str:
    try:
        return importlib.metadata.version("scd-bench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def load_plugins(quiet: bool = False) -> None:
    """Import every baseline module and entry-point plugin (once). One that fails is recorded (`broken_plugins`)
    and, unless `quiet`, announced in one line on stderr; the rest load."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    found: list[Plugin] = []
    package = importlib.import_module(PLUGIN_PACKAGE)
    own = _own_version()
    for mod in pkgutil.iter_modules(package.__path__):
        name = f"{PLUGIN_PACKAGE}.{mod.name}"
        try:
            importlib.import_module(name)
            error = None
        except Exception as e:  # a broken module stops only the methods that need it
            error = _error(e)
        found.append(Plugin(name, name, "scd-bench", own, PLUGIN_PACKAGE, error))
    try:
        points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as e:  # unreadable package metadata
        points = []
        found.append(Plugin("(entry points)", ENTRY_POINT_GROUP, "", "unknown", "", _error(e)))
    for ep in points:
        dist, version = _dist(ep)
        target = str(getattr(ep, "value", "") or ep.name)
        try:
            ep.load()
            error = None
        except Exception as e:
            error = _error(e)
        found.append(Plugin(ep.name, target, dist, version, target.partition(":")[0].split(".")[0], error))
    _plugins[:] = found
    if not quiet:
        for p in broken_plugins():
            print(f"warning: {p.line()}", file=sys.stderr)
        for hint in group_typos():
            print(f"warning: {hint}", file=sys.stderr)


def plugins() -> list[Plugin]:
    """Every plugin found by `load_plugins` (which this runs), loaded or broken."""
    load_plugins()
    return list(_plugins)


def broken_plugins() -> list[Plugin]:
    return [p for p in _plugins if p.error is not None]


def group_typos() -> list[str]:
    """Installed entry points in a group whose name is close to, but not, ENTRY_POINT_GROUP: most likely a typo in
    a plugin's pyproject.toml, which would otherwise leave the plugin silently unloaded."""
    try:
        groups = importlib.metadata.entry_points().groups
    except Exception:
        return []
    close = difflib.get_close_matches(ENTRY_POINT_GROUP, [g for g in groups if g != ENTRY_POINT_GROUP], cutoff=0.85)
    out = []
    for group in close:
        for ep in importlib.metadata.entry_points(group=group):
            dist, version = _dist(ep)
            out.append(f"entry point {ep.name} = {ep.value} of package {dist or '?'} {version} is in group {group!r}, "
                       f"not {ENTRY_POINT_GROUP!r}: it is not loaded (fix the group name in its pyproject.toml)")
    return out


def explain(message: str) -> str:
    """An unknown-name error's message, with the plugins that failed to load (the name may be one of theirs)."""
    broken = broken_plugins()
    if not broken:
        return message
    return f"{message.rstrip()} (it may come from a plugin that failed to load: " \
           f"{'; '.join(p.line() for p in broken)})"


def plugin_of(module: str) -> Plugin | None:
    """The entry-point plugin whose parts live in `module` (by top-level package), None for the project's own."""
    top = module.split(".")[0]
    for p in plugins():
        if p.entry_point and p.module == top:
            return p
    return None
