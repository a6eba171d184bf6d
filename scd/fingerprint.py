"""Code provenance: the fingerprint of the source a job's results depend on (its `code` setting, so an edit reruns
exactly the jobs it can change), and the plugins a method's parts come from."""
from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import os
import sys
from pathlib import Path

from scd.distill.parts import DIVERGENCES, RESPONSES, SCHEDULES, WEIGHTINGS
from scd.distill.plugins import explain, plugin_of

REPO_ROOT = Path(__file__).resolve().parents[1]

# A job's `code` (a param, so an edit reruns it) is the fingerprint of the source that decides its results: the
# project modules its stage module imports, followed through their imports, and for a distillation the modules its
# method's parts are defined in, followed likewise (a plugin's included, with its package's version). Bookkeeping
# modules are left out, so editing them reruns nothing; the part modules (core and baselines/) count only through
# the parts a method uses, so editing baselines/taid.py reruns the taid jobs alone. A task's declaration and loader
# are the prepare job's task_fingerprint; everything downstream of prepare follows its output.
STAGE_MODULES = {"prepare": ("scd.stages.prepare",), "sft": ("scd.stages.sft",),
                 "teacher_outputs": ("scd.stages.teacher_outputs",),
                 "distill": ("scd.stages.distill", "scd.stages.evaluate"),  # it also evaluates (--eval-out)
                 "evaluate": ("scd.stages.evaluate",), "zero_shot": ("scd.stages.evaluate",)}
NOT_RESULTS = frozenset({  # package markers, records, paths, plots, typed settings (their values are params),
    "scd", "scd.stages", "scd.distill", "baselines", "scd.tracking", "scd.layout", "scd.plots", "scd.settings",
    "scd.registry", "scd.dicts", "scd.config", "scd.fingerprint", "scd.checkout",
    "tasks.datafiles",  # data files are pinned by sha256
    "scd.distill.plugins", "scd.distill.checks"})  # the loader; plugins count through the parts a method uses
PART_MODULES = frozenset({"scd.distill.divergences", "scd.distill.schedules", "scd.distill.weighting",
                          "scd.distill.responses"})  # and baselines.*: through a method's parts only
PACKAGES = ("scd", "tasks", "baselines")
PART_REGISTRIES = (("divergence", DIVERGENCES), ("schedule", SCHEDULES), ("weighting", WEIGHTINGS),
                   ("responses", RESPONSES))


@functools.lru_cache(maxsize=1)
def _project_modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO_ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


@functools.lru_cache(maxsize=None)
def _imports(module: str) -> frozenset[str]:
    """The project modules `module`'s source imports (import statements anywhere in the file)."""
    known = _project_modules()
    path = known[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(pkg + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return frozenset(found)


def _closure(roots, parts: bool) -> set[str]:
    """`roots` and the project modules they import, transitively, bookkeeping left out; the part modules only when
    `parts` (following a method's parts)."""
    seen, todo = set(), list(roots)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for dep in _imports(module):
            if dep in NOT_RESULTS or (not parts and (dep in PART_MODULES or dep.startswith("baselines."))):
                continue
            todo.append(dep)
    return seen


def _file_hash(path: str | Path) -> str:
    st = os.stat(path)
    return _file_hash_at(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=None)
def _file_hash_at(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _part_objects(spec) -> list[tuple[str, object]]:
    try:
        return [(key, registry.get(getattr(spec, key))) for key, registry in PART_REGISTRIES]
    except KeyError as e:  # an unknown part name, maybe one of a plugin that failed to load
        raise ValueError(explain(str(e))) from None


def _module_of(obj) -> str:
    return getattr(obj, "__module__", None) or type(obj).__module__


def method_plugins(spec) -> list:
    """The installed (entry-point) plugins the parts of a method spec come from, each once."""
    found = {}
    for _, obj in _part_objects(spec):
        plugin = plugin_of(_module_of(obj))
        if plugin is not None:
            found[plugin.name] = plugin
    return list(found.values())


def code_files(stage: str, spec=None) -> dict[str, str]:
    """{label: sha256} of the source files a `stage` job's results depend on (see above): project files by their
    path in the repository, a plugin's by module name. `spec`: the method (scd.settings.MethodSpec) of a
    distillation."""
    known = _project_modules()
    modules = _closure(STAGE_MODULES[stage], parts=False)
    outside = {}
    for _, obj in _part_objects(spec) if spec is not None else []:
        module = _module_of(obj)
        if module in known:
            modules |= _closure([module], parts=True)
            continue
        try:
            path = inspect.getsourcefile(obj) or getattr(sys.modules.get(module), "__file__", None)
        except TypeError:
            path = getattr(sys.modules.get(module), "__file__", None)
        if path and os.path.isfile(path):
            outside[f"module:{module}"] = _file_hash(path)
    files = {known[m].relative_to(REPO_ROOT).as_posix(): _file_hash(known[m]) for m in modules - NOT_RESULTS}
    return dict(sorted((files | outside).items()))


def code_fingerprint(stage: str, spec=None) -> str:
    """16 hex digits over `code_files` and, for a distillation, the versions of the plugins its parts come from."""
    h = hashlib.sha256()
    for label, digest in code_files(stage, spec).items():
        h.update(f"{label}\0{digest}\n".encode())
    for plugin in method_plugins(spec) if spec is not None else []:
        h.update(f"plugin:{plugin.name}\0{plugin.package}\0{plugin.version}\n".encode())
    return h.hexdigest()[:16]
