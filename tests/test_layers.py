"""The package's structure, read from the source: project modules import one another without a cycle, only
downward through the layers of docs/architecture.md, and at module level (a function-level import of a project
module is how cycles hide). Plugin loading (scd/distill/plugins.py) and the CLI's on-demand loading of subcommand
modules go through importlib by name, which is not an import statement."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("scd", "baselines", "tasks", "report")

# Lowest first. A module belongs to the first pattern that matches its name (a prefix ending in "." matches a
# package's modules; otherwise the name must be equal).
LAYERS = [
    ("ground floor", ["scd", "scd.registry", "scd.dicts", "scd.data", "scd.tokens", "scd.runtime", "scd.tracking",
                      "scd.mlflow_sync", "scd.tokenizer", "scd.plots", "scd.decompose", "scd.layout", "scd.settings",
                      "scd.checkout", "scd.stats", "tasks", "tasks."]),
    ("models, training, evaluation", ["scd.prepared", "scd.models", "scd.train", "scd.evaluate"]),
    ("distillation parts and plugins", ["scd.distill", "scd.distill.", "baselines", "baselines."]),
    ("configuration", ["scd.config", "scd.fingerprint"]),
    ("stage commands and the report", ["scd.stages", "scd.stages.", "report", "report."]),
    ("command line and benchmarks", ["scd.cli", "scd.benchmarks", "scd.benchmarks."]),
]


def layer_of(module: str) -> int:
    for level, (_, patterns) in enumerate(LAYERS):
        if any(module == p or (p.endswith(".") and module.startswith(p)) for p in patterns):
            return level
    raise AssertionError(f"module {module} belongs to no layer: add it to LAYERS in {Path(__file__).name} "
                         f"and to docs/architecture.md")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports(module: str, path: Path, known: dict[str, Path], source: str | None = None
            ) -> list[tuple[str, int, bool]]:
    """(imported project module, line, at module level?) for every import statement of the file."""
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` / try blocks at module level count as module level
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        targets = []
        for name in names:
            if name.split(".")[0] not in PACKAGES:
                continue
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name not in targets:
                targets.append(name)
        found += [(name, node.lineno, id(node) in top) for name in targets]
    return found


def graph() -> tuple[dict[str, set[str]], list[str]]:
    known = modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    nested = []
    for module, path in known.items():
        for target, line, at_top in imports(module, path, known):
            edges[module].add(target)
            if not at_top:
                nested.append(f"{path.relative_to(REPO)}:{line} imports {target} inside a function")
    return edges, nested


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    edges, _ = graph()
    assert cycles(edges) == []


def test_imports_go_downward_only():
    edges, _ = graph()
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in sorted(edges.items()) for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert upward == []


def test_project_modules_are_imported_at_module_level():
    _, nested = graph()
    assert nested == []


def test_the_checks_see_what_they_must():
    """The graph reader finds a cycle and a nested import when there is one (a test that cannot fail is none)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    known = modules()
    assert "scd.tokens" in graph()[0]["scd.train"]  # a plain `from scd.tokens import ...` is read
    source = "import os\nfrom scd.tokens import nll\n\ndef f():\n    from scd.models import build_model\n"
    found = imports("scd.train", REPO / "scd" / "train.py", known, source)
    assert found == [("scd.tokens", 2, True), ("scd.models", 5, False)]
    with pytest.raises(AssertionError, match="belongs to no layer"):
        layer_of("scd.somewhere_new")


@pytest.mark.parametrize("module", sorted(modules()))
def test_every_module_has_a_layer(module):
    layer_of(module)
