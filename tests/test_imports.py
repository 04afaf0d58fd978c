"""The import graph: the command (``opsdash``) owns the wiring, the parts never import it, and nothing
imports in a circle.

- No import of ``opsdash`` from ``telemetry_bus``, ``gateway`` or ``probes``, not even for typing.
- No import of ``opsdash`` at run time from ``history`` or ``alerts`` (their services still type against
  ``opsdash.config.Config`` under TYPE_CHECKING).
- No circle among module-level imports of any package, and none at all, function-level imports
  included, within ``opsdash``, ``telemetry_bus`` and ``probes``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("telemetry_bus", "gateway", "probes", "history", "alerts", "opsdash")


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            mods[name] = f
    return mods


MODULES = _modules()


def _edges(kind: str) -> dict[str, set[str]]:
    """``kind``: "all" (every import), "runtime" (not under TYPE_CHECKING), "module" (runtime and
    outside functions)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in MODULES.items():
        stack: list[tuple[ast.AST, bool]] = [(n, False) for n in ast.parse(path.read_text()).body]
        while stack:
            node, in_func = stack.pop()
            if kind != "all" and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                in_func = True
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                stack.extend((child, in_func) for child in ast.iter_child_nodes(node))
                continue
            if kind == "module" and in_func:
                continue
            edges[name].update(t for t in targets if t in MODULES and t != name)
    return edges


def _cycles(edges: dict[str, set[str]], within: tuple[str, ...] = PACKAGES) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), restricted to ``within``."""
    keep = {m for m in MODULES if m.split(".")[0] in within}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, set()) & keep):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for m in sorted(keep):
        if m not in index:
            visit(m)
    return found


def _up(edges: dict[str, set[str]], lower: tuple[str, ...]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, bs in edges.items() for b in bs
                  if a.split(".")[0] in lower and b.split(".")[0] == "opsdash")


def test_the_parts_never_import_the_command() -> None:
    assert _up(_edges("all"), ("telemetry_bus", "gateway", "probes")) == []
    assert _up(_edges("runtime"), ("history", "alerts")) == []


def test_no_import_circles() -> None:
    assert _cycles(_edges("module")) == []
    assert _cycles(_edges("all"), ("opsdash", "telemetry_bus", "probes")) == []


def test_the_checks_can_fail() -> None:
    # the same analysis sees the arrows and circles that are allowed elsewhere
    edges = _edges("all")
    assert "opsdash.wiring" in edges and "telemetry_bus.service" in edges["opsdash.wiring"]
    assert _cycles({"opsdash.cli": {"opsdash.demo"}, "opsdash.demo": {"opsdash.cli"}}) == [
        ["opsdash.cli", "opsdash.demo"]]
    assert _up({"probes.runner": {"opsdash.selfreport"}}, ("probes",)) == ["probes.runner -> opsdash.selfreport"]
