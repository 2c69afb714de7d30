"""The package's layout keeps its promise: the method at the top of ``nhl/``, the studies, the
tutorial's widgets and the plots above it, and no import circles.

Every ``import`` of every module is read (function-level imports too), so a shortcut that
hides an upward import inside a function fails here as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nhl"

#: Which layers each layer may import. ``core`` is everything at the top of nhl/ (the method,
#: training, evaluation, data) and its subpackages losses/ and data/; the command line may reach
#: every layer.
ALLOWED = {
    "core": {"core"},
    "studies": {"core", "studies"},
    "plots": {"core", "studies", "plots"},
    "tutorial": {"core", "studies", "plots", "tutorial"},
    "front": {"core", "studies", "plots", "tutorial", "front"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    if module in ("nhl.cli", "nhl.__main__"):
        return "front"
    if len(parts) > 1 and parts[1] in ("studies", "plots", "tutorial"):
        return parts[1]
    return "core"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".")
    if not MODULES[module].name == "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> set[str]:
    """The nhl modules ``module`` imports, anywhere in its code."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            # ``from pkg import sub`` imports the submodule when there is one
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # a name inside a module: the module
                name = name.rpartition(".")[0]
            if name.startswith("nhl") and name != module:
                found.add(name)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_layers_exist_and_are_read():
    layers = {layer(m) for m in MODULES}
    assert layers == set(ALLOWED)
    assert sum(len(v) for v in GRAPH.values()) > 100  # the imports are really read


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_only(module):
    wrong = sorted(t for t in GRAPH[module] if layer(t) not in ALLOWED[layer(module)])
    assert not wrong, (f"{module} ({layer(module)}) imports {wrong}: the {layer(module)} layer "
                       f"may import only {sorted(ALLOWED[layer(module)])}")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if t == "nhl":  # ``from . import __version__``: the package's own __init__
                continue
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                cycle = visit(t)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


def test_no_import_circles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle)
    # the check itself finds a circle hidden behind function-level imports
    assert find_cycle({"nhl.a": {"nhl.b"}, "nhl.b": {"nhl.c"}, "nhl.c": {"nhl.a"}}) == [
        "nhl.a", "nhl.b", "nhl.c", "nhl.a"]


def test_top_level_holds_the_method_in_about_twenty_files():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 22, f"nhl/ has {len(top)} top-level modules: {top}"
    for name in ("layer.py", "weighting.py", "distill.py", "objective.py"):
        assert name in top
    assert (PACKAGE / "losses" / "__init__.py").is_file()


def test_the_import_walk_catches_an_upward_import(tmp_path, monkeypatch):
    """The check itself: a core module that imports a study inside a function is caught."""
    fake = tmp_path / "nhl" / "metrics_extra.py"
    fake.parent.mkdir()
    fake.write_text("def f():\n    from .studies import results\n    return results\n")
    monkeypatch.setitem(MODULES, "nhl.metrics_extra", fake)
    found = imports_of("nhl.metrics_extra")
    assert found == {"nhl.studies.results"}
    assert layer("nhl.studies.results") not in ALLOWED[layer("nhl.metrics_extra")]
