"""The import structure of ``src/vocalis``: no cycle between modules, and the serving side stays torch-free.

Imports are read from the source with :mod:`ast`, function-level imports included (a lazy import still ties
two modules together); imports under ``if TYPE_CHECKING:`` are left out, as they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "vocalis"
#: subpackages that serve predictions: they may need neither torch nor the training side
TORCH_FREE = ("vocalis.inference", "vocalis.serving", "vocalis.contracts")
#: a checkpoint is a torch file: reading or writing one needs torch, which this module imports inside its
#: functions only (tests/contracts checks that importing vocalis.contracts loads no torch)
TORCH_INSIDE_FUNCTIONS = {"vocalis.contracts.checkpoint"}
FORBIDDEN_THIRD_PARTY = ("torch", "torchvision", "torchaudio", "lightning", "torchmetrics")
FORBIDDEN_OURS = ("vocalis.training", "vocalis.export")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, list[str]]]:
    """``(imported module, names)`` for every import that runs, at any depth."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            yield base, [a.name for a in node.names]
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ``vocalis`` it imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for target, names in _imports(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
                continue
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            if subs:
                edges.update(subs)
            if len(subs) < len(names) or not names:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                edges.add(target)
        edges.discard(name)
        graph[name] = edges
    return graph


def third_party_imports(module: str) -> set[str]:
    """Top-level names of everything outside ``vocalis`` that ``module`` imports (at any depth)."""
    path = _modules()[module]
    return {
        target.split(".")[0]
        for target, _ in _imports(ast.parse(path.read_text()), module, path.name == "__init__.py")
        if target and target.split(".")[0] != PACKAGE
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> b -> ... -> a) per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found = []
    for group in groups:  # a shortest way round, from the group's first module back to it
        start = min(group)
        paths = {start: [start]}
        frontier = [start]
        cycle: list[str] | None = None
        while frontier and cycle is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & group):
                    if w == start:
                        cycle = [*paths[v], start]
                        break
                    if w not in paths:
                        paths[w] = [*paths[v], w]
                        nxt.append(w)
                if cycle:
                    break
            frontier = nxt
        found.append(cycle or sorted(group))
    return found


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module ``start`` imports, directly or not, with the chain of imports that gets there."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    return paths


def test_the_walker_sees_what_it_must() -> None:
    """The graph is not empty by accident: known imports, function-level ones included, are in it."""
    graph = import_graph()
    assert len(graph) > 30
    assert "vocalis.errors" in graph["vocalis.audio"] | graph["vocalis.inference.predictor"]
    # cli/artifact.py imports the exporter inside the command body only
    assert "vocalis.export.onnx" in graph["vocalis.cli.artifact"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def subpackage_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed to ``vocalis.<subpackage or module>`` (the direction docs/architecture.md
    draws); ``vocalis`` itself (the version) is left out."""

    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for a, targets in graph.items():
        for b in targets:
            if top(a) != top(b) and b != PACKAGE and a != PACKAGE:
                packages.setdefault(top(a), set()).add(top(b))
    return packages


def test_no_import_cycle_between_subpackages() -> None:
    """Every arrow between stages points one way (vocalis.training -> vocalis.evaluation, never back)."""
    found = cycles(subpackage_graph(import_graph()))
    assert not found, "import cycles between subpackages: " + "; ".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("package", TORCH_FREE)
def test_prediction_side_never_imports_torch_or_the_training_side(package: str) -> None:
    graph = import_graph()
    modules = [m for m in graph if m == package or m.startswith(package + ".")]
    assert modules, f"{package} has no modules"
    problems = []
    for module in modules:
        for target, chain in reachable(graph, module).items():
            if target.startswith(FORBIDDEN_OURS):
                problems.append(" -> ".join(chain))
            bad = third_party_imports(target) & set(FORBIDDEN_THIRD_PARTY)
            if target in TORCH_INSIDE_FUNCTIONS:
                bad -= {"torch"}
            if bad:
                problems.append(" -> ".join(chain) + f" -> {', '.join(sorted(bad))}")
    assert not problems, f"{package} reaches torch or the training side:\n" + "\n".join(sorted(set(problems)))
