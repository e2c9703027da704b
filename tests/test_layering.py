"""The import graph of dimgen: every module imports, lower layers never import higher ones, and
no dimgen module imports itself back through others (no cycles).

The graph is read from the source with ``ast`` (not from ``sys.modules``, which hides order and
deferred imports). Two graphs: module-level imports only (what runs at ``import``), and all
imports, including those deferred into functions (a deferred import is still a dependency).
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Where each dimgen package lives in the source tree (the CLI is packaged from cli/).
ROOTS = {"dimgen": REPO / "dimgen", "dimgen.cli": REPO / "cli"}

#: The foundation: models, channels, estimators, data, files and configs.
LOWER = ("channel", "critics", "mi", "nets", "data", "io", "config", "objectives", "errors")
#: What is built on it: trainers, generators, flows, experiments, reports and the CLI.
HIGHER = (
    "train",
    "training",
    "runs",
    "gan",
    "flows",
    "sweep",
    "evaluation",
    "cli",
    "diffusion",
    "integrations",
    "generator_runs",
)


def _modules() -> dict[str, Path]:
    """Every dimgen module name -> its file."""
    out: dict[str, Path] = {}
    for pkg, root in ROOTS.items():
        for f in sorted(root.rglob("*.py")):
            parts = [p for p in f.relative_to(root).with_suffix("").parts if p != "__init__"]
            out[".".join([pkg, *parts])] = f
    return out


MODULES = _modules()


def _import_nodes(tree: ast.Module, deferred: bool) -> Iterable[ast.Import | ast.ImportFrom]:
    if deferred:
        yield from (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
        return

    def walk(body: list[ast.stmt]) -> Iterable[ast.Import | ast.ImportFrom]:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    yield from walk(node.body)
                    yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                for part in (
                    node.body,
                    node.orelse,
                    node.finalbody,
                    *(h.body for h in node.handlers),
                ):
                    yield from walk(part)

    yield from walk(tree.body)


def _resolve(target: str) -> str | None:
    """The dimgen module that importing ``target`` names (``pkg.mod.attr`` -> ``pkg.mod``)."""
    while target:
        if target in MODULES:
            return target
        if "." not in target or not target.startswith("dimgen"):
            return None
        target = target.rpartition(".")[0]
    return None


def imports_of(name: str, *, deferred: bool) -> set[str]:
    """dimgen modules that module ``name`` imports (at module level, or anywhere if deferred)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(tree, deferred):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            targets = [mod, *(f"{mod}.{alias.name}" for alias in node.names)]
        for target in targets:
            resolved = _resolve(target)
            if resolved is not None and resolved != name:
                found.add(resolved)
    return found


def graph(*, deferred: bool) -> dict[str, set[str]]:
    return {name: imports_of(name, deferred=deferred) for name in MODULES}


def find_cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per back edge of a depth-first search (empty iff the graph is acyclic)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [])
    return cycles


def _layer(name: str, layers: tuple[str, ...]) -> bool:
    parts = name.split(".")
    return len(parts) > 1 and parts[1] in layers


# ---------------------------------------------------------------------------------------------


def test_the_graph_reader_sees_known_edges() -> None:
    """The ast reader resolves relative, absolute and deferred imports (else the checks below
    would pass on an empty graph)."""
    assert len(MODULES) > 30 and "dimgen.cli.options" in MODULES
    top = graph(deferred=False)
    assert "dimgen.errors" in top["dimgen.channel"]  # from .errors import ...
    assert "dimgen.diagnostics.settings" in top["dimgen.diagnostics.checks"]  # from .settings
    assert "dimgen.config" in top["dimgen.flows.config"]  # from ..config
    assert "dimgen.cli.options" in top["dimgen.cli.encode"]  # from dimgen.cli.options
    assert "dimgen.train" not in top["dimgen.cli.encode"]  # deferred: not at module level
    assert "dimgen.train" in graph(deferred=True)["dimgen.cli.encode"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name: str) -> None:
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve() == MODULES[name].resolve()


@pytest.mark.parametrize("deferred", [False, True], ids=["module-level", "with-deferred"])
def test_lower_layers_never_import_higher_ones(deferred: bool) -> None:
    bad = {
        name: sorted(t for t in targets if _layer(t, HIGHER))
        for name, targets in graph(deferred=deferred).items()
        if _layer(name, LOWER)
    }
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"lower layers import higher ones: {bad}"


def test_errors_is_the_root_of_the_graph() -> None:
    assert graph(deferred=True)["dimgen.errors"] == set()


def test_no_import_cycles_at_module_level() -> None:
    cycles = find_cycles(graph(deferred=False))
    assert not cycles, f"import cycles among dimgen modules: {cycles}"


def test_no_import_cycles_with_deferred_imports() -> None:
    """A cycle hidden in function-level imports is still two modules that need each other."""
    cycles = find_cycles(graph(deferred=True))
    assert not cycles, f"import cycles among dimgen modules (deferred imports included): {cycles}"
