"""The import graph of dimgen: every module imports, each part imports only the parts below it, and
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

#: Shared infrastructure at the root of the package: errors, bounded parsing, files, configs.
INFRA = frozenset(
    {"__init__", "errors", "parsing", "io", "arrays", "config", "metric_keys", "plots", "folders"}
)

#: Which parts of dimgen each part may import (besides itself). A part is a root module or a
#: subpackage; anything not listed here is a new part that must be given its place.
ALLOWED: dict[str, frozenset[str]] = {
    **{name: INFRA for name in INFRA},
    # data sources and the one training harness know nothing of what is built on them
    "data": INFRA,
    "training": INFRA,
    "integrations": INFRA,
    # the certificate's tests and the FID features read data, never a model
    "diagnostics": INFRA | {"data"},
    "fidelity": INFRA | {"data"},
    # the paper's method: data, harness, certificate; never a generator, flow, SSL or the CLI
    "infomax": INFRA | {"data", "training", "diagnostics"},
    "flows": INFRA | {"data", "training", "diagnostics"},
    "ssl": INFRA | {"data", "training", "infomax"},
    # generators build on the method; the protocol's loader reads any generator's run folder
    "generators": INFRA | {"infomax", "gan", "diffusion"},
    "gan": INFRA
    | {"data", "training", "diagnostics", "fidelity", "flows", "generators", "infomax"},
    # diffusion reuses the GAN's evaluation, images and EMA (shared generator code)
    "diffusion": INFRA
    | {"data", "training", "diagnostics", "fidelity", "flows", "generators", "infomax"}
    | {"gan", "integrations"},
    "gan_nets": frozenset({"gan"}),  # deprecated name of dimgen.gan.nets
    "cli": frozenset(),  # the top: may import anything (checked below)
}


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
            subs = [f"{mod}.{alias.name}" for alias in node.names]
            # `from . import sibling` inside a package does not re-run the package's __init__
            ancestor = name.startswith(mod + ".") and all(s in MODULES for s in subs)
            targets = subs if ancestor else [mod, *subs]
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


def part(name: str) -> str:
    """The part of dimgen a module belongs to: ``dimgen.infomax.channel`` -> ``infomax``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


# ---------------------------------------------------------------------------------------------


def test_the_graph_reader_sees_known_edges() -> None:
    """The ast reader resolves relative, absolute and deferred imports (else the checks below
    would pass on an empty graph)."""
    assert len(MODULES) > 30 and "dimgen.cli.options" in MODULES
    top = graph(deferred=False)
    assert "dimgen.errors" in top["dimgen.infomax.channel"]  # from ..errors import ...
    assert "dimgen.diagnostics.settings" in top["dimgen.diagnostics.checks"]  # from .settings
    assert "dimgen.config" in top["dimgen.flows.config"]  # from ..config
    assert "dimgen.cli.options" in top["dimgen.cli.encode"]  # from dimgen.cli.options
    assert "dimgen.infomax.trainer" not in top["dimgen.cli.encode"]  # deferred: not at module level
    assert "dimgen.infomax.trainer" in graph(deferred=True)["dimgen.cli.encode"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.filterwarnings("ignore:dimgen.gan_nets is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name: str) -> None:
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve() == MODULES[name].resolve()


def test_every_part_has_a_place() -> None:
    parts = {part(name) for name in MODULES}
    assert parts <= set(ALLOWED), f"parts without a place in the layering: {parts - set(ALLOWED)}"
    assert {"infomax", "data", "fidelity", "generators", "training"} <= parts


def crossings(g: dict[str, set[str]]) -> dict[str, list[str]]:
    """Imports that cross the layering: module -> the modules of parts it may not import."""
    bad = {
        name: sorted(
            t for t in targets if part(t) != part(name) and part(t) not in ALLOWED[part(name)]
        )
        for name, targets in g.items()
        if part(name) != "cli"
    }
    return {k: v for k, v in bad.items() if v}


@pytest.mark.parametrize("deferred", [False, True], ids=["module-level", "with-deferred"])
def test_each_part_imports_only_what_it_may(deferred: bool) -> None:
    """data / training / infra never import the method or a generator; infomax never imports
    gan, diffusion, flows or the CLI; only the CLI sees everything."""
    bad = crossings(graph(deferred=deferred))
    assert not bad, f"imports across the layering: {bad}"


def test_the_layering_check_can_fail() -> None:
    """The rule does see forbidden edges (else it would pass on anything)."""
    fake = {
        "dimgen.data.sources": {"dimgen.infomax.trainer", "dimgen.errors"},
        "dimgen.infomax.channel": {"dimgen.gan.model", "dimgen.training.loop"},
        "dimgen.cli.encode": {"dimgen.gan.model"},
    }
    assert crossings(fake) == {
        "dimgen.data.sources": ["dimgen.infomax.trainer"],
        "dimgen.infomax.channel": ["dimgen.gan.model"],
    }


def test_errors_is_the_root_of_the_graph() -> None:
    assert graph(deferred=True)["dimgen.errors"] == set()


def test_no_import_cycles_at_module_level() -> None:
    cycles = find_cycles(graph(deferred=False))
    assert not cycles, f"import cycles among dimgen modules: {cycles}"


def test_no_import_cycles_with_deferred_imports() -> None:
    """A cycle hidden in function-level imports is still two modules that need each other."""
    cycles = find_cycles(graph(deferred=True))
    assert not cycles, f"import cycles among dimgen modules (deferred imports included): {cycles}"
