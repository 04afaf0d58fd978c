"""The dependency graph and its root causes (design.md section 10). Pure: no clock, no sockets.

    graph = DependencyGraph(GraphConfig().resolved(known))        # configured edges, checked
    graph.set_declared("delivery", ["postgres"])                   # a status message's depends_on
    result = graph.evaluate({"postgres": "down", "delivery": "degraded", ...})
    result.nodes["delivery"].impacted_by                           # ("postgres",)

Edges are ``(dependent, dependency)``: ``("delivery", "postgres")`` means delivery needs postgres.

Definitions (docs/view.md, section ``graph``):

- *bad* means ``down`` or ``degraded``. ``unknown`` is not bad: a component we cannot see explains
  nothing, so it neither becomes a root cause nor passes one on.
- A **root cause** is a bad component none of whose dependencies is bad.
- ``impacted_by(c)`` is the set of root causes reached from ``c`` by following dependency edges
  through bad components only: A -> B -> C with C down and B degraded gives ``impacted_by(A) =
  impacted_by(B) = [C]``; with B healthy, B is impacted by C but A is not (B shields it). ``c`` itself
  may be in any state: a healthy dispatcher whose PostgreSQL is down is shown "impacted", which is
  the warning an operator wants before the dispatcher turns red. A root cause is not impacted by
  itself.

Configured edges must name known components and form no cycle (:class:`GraphConfigError`, naming
the key, the name or the cycle). Edges declared at run time (``depends_on``) cannot be refused at
start: one that would close a cycle is left out and listed in ``ignored`` with the reason, so the
graph stays acyclic and the root causes well defined.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Final

import msgspec

if TYPE_CHECKING:
    from telemetry_bus.view import SectionContext

__all__ = [
    "DEFAULT_EDGES",
    "DependencyGraph",
    "GraphConfig",
    "GraphConfigError",
    "GraphResult",
    "GraphSection",
    "Node",
    "find_cycle",
]

Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
Edge = tuple[str, str]

#: The seed's platform (design.md section 10): dependent -> dependency.
DEFAULT_EDGES: Final[tuple[Edge, ...]] = (
    ("ingest", "mqtt"), ("ingest", "influxdb"),
    ("evaluator", "influxdb"), ("evaluator", "postgres"),
    ("dispatcher", "postgres"),
    ("delivery", "postgres"),
)
#: Most edges the graph holds (configured + declared); more declared ones are ignored and listed.
MAX_EDGES: Final = 4096
#: Most ``depends_on`` entries a single service contributes.
MAX_DECLARED: Final = 32
_BAD: Final = frozenset({"down", "degraded"})


class GraphConfigError(ValueError):
    """``graph.edges`` names an unknown component or has a cycle; the message says which."""


class GraphConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[graph]``: ``edges = [["ingest", "mqtt"], ...]`` (``OPSDASH_GRAPH__EDGES``).

    ``edges`` unset: the seed's defaults (:data:`DEFAULT_EDGES`), keeping only those whose two ends
    are components of this deployment. Set: every edge must name known components (checked by
    :meth:`resolved` where the components are known) and the whole must have no cycle.
    """

    edges: list[tuple[Name, Name]] | None = None

    def __post_init__(self) -> None:
        if self.edges is None:
            return
        for i, (a, b) in enumerate(self.edges):
            if a == b:
                raise GraphConfigError(f"edges[{i}]: {a!r} cannot depend on itself")
        cycle = find_cycle(self.edges)
        if cycle:  # msgspec puts the key before it: "graph: edges has a cycle: a -> b -> a"
            raise GraphConfigError(f"edges has a cycle: {' -> '.join(cycle)}")

    def resolved(self, known: Iterable[str]) -> list[Edge]:
        """The configured edges, checked against the ``known`` components (services and probes)."""
        names = set(known)
        if self.edges is None:
            return [(a, b) for a, b in DEFAULT_EDGES if a in names and b in names]
        for i, (a, b) in enumerate(self.edges):
            for end in (a, b):
                if end not in names:
                    raise GraphConfigError(
                        f"graph.edges[{i}] = [{a!r}, {b!r}]: {end!r} is not a known component "
                        f"(known: {', '.join(sorted(names))}); add it to aggregator.expected_services "
                        "or aggregator.expected_probes, or fix the name")
        return list(dict.fromkeys((a, b) for a, b in self.edges))


def find_cycle(edges: Iterable[Edge]) -> list[str] | None:
    """A cycle in ``edges`` as ``[a, b, ..., a]``, or None when they form a DAG (iterative DFS)."""
    adj: dict[str, list[str]] = {}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, [])
    color = dict.fromkeys(adj, 0)  # 0 new, 1 on the stack, 2 done
    for start in sorted(adj):
        if color[start]:
            continue
        path = [start]
        iters = [iter(adj[start])]
        color[start] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                color[path.pop()] = 2
                iters.pop()
            elif color[nxt] == 1:
                return [*path[path.index(nxt):], nxt]
            elif color[nxt] == 0:
                color[nxt] = 1
                path.append(nxt)
                iters.append(iter(adj[nxt]))
    return None


@dataclass(frozen=True, slots=True)
class Node:
    status: str
    impacted_by: tuple[str, ...] = ()
    root: bool = False


@dataclass(frozen=True, slots=True)
class GraphResult:
    nodes: dict[str, Node]
    edges: list[Edge]
    #: root cause -> the components it impacts (sorted), in order: down before degraded, then name
    roots: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: declared edges left out, with the reason
    ignored: list[tuple[Edge, str]] = field(default_factory=list)

    def section(self) -> dict[str, object]:
        """The view's ``graph`` section (docs/view.md)."""
        nodes: dict[str, object] = {
            name: {"status": n.status, "impacted_by": list(n.impacted_by), "root_cause": True} if n.root
            else {"status": n.status, "impacted_by": list(n.impacted_by)}
            for name, n in self.nodes.items()}
        out: dict[str, object] = {
            "nodes": nodes,
            "edges": [list(e) for e in self.edges],
            "roots": [{"component": r, "status": self.nodes[r].status, "impacts": list(imp)}
                      for r, imp in self.roots.items()],
            "summary": self.summary(),
        }
        if self.ignored:
            out["ignored"] = [{"edge": list(e), "reason": why} for e, why in self.ignored]
        return out

    def summary(self) -> str | None:
        """``postgres down — 3 components impacted; influxdb degraded``; None when nothing is bad."""
        parts = []
        for r, imp in self.roots.items():
            text = f"{r} {self.nodes[r].status}"
            if imp:
                text += f" — {len(imp)} component{'s' if len(imp) != 1 else ''} impacted"
            parts.append(text)
        return "; ".join(parts) or None


class DependencyGraph:
    """Configured edges plus edges declared by services at run time; :meth:`evaluate` per tick.

    The adjacency is rebuilt only when the declared edges change (a status message with a new
    ``depends_on``), so a tick costs one pass over the bad components and their dependents.
    """

    def __init__(self, edges: Sequence[Edge] = ()) -> None:
        cycle = find_cycle(edges)
        if cycle:
            raise GraphConfigError(f"graph.edges has a cycle: {' -> '.join(cycle)}")
        self._configured: list[Edge] = list(dict.fromkeys(edges))
        self._declared: dict[str, tuple[str, ...]] = {}
        self._dirty = True
        self.edges: list[Edge] = []
        self.ignored: list[tuple[Edge, str]] = []
        self._deps: dict[str, list[str]] = {}
        self._order: list[str] = []  # the nodes, sorted; re-sorted only when the set changes
        self._order_of: set[str] = set()

    def set_declared(self, service: str, depends_on: Iterable[str]) -> None:
        """The ``depends_on`` a service declares now (the union over its instances); () clears it."""
        deps = tuple(sorted(set(depends_on)))[:MAX_DECLARED]
        if self._declared.get(service, ()) != deps:
            if deps:
                self._declared[service] = deps
            else:
                self._declared.pop(service, None)
            self._dirty = True

    def _rebuild(self) -> None:
        edges = list(self._configured)
        seen = set(edges)
        deps: dict[str, list[str]] = {}
        for a, b in edges:
            deps.setdefault(a, []).append(b)
        ignored: list[tuple[Edge, str]] = []
        for svc in sorted(self._declared):
            for dep in self._declared[svc]:
                e = (svc, dep)
                if e in seen:
                    continue
                if dep == svc:
                    ignored.append((e, f"{svc} declares a dependency on itself"))
                    continue
                if len(edges) >= MAX_EDGES:
                    ignored.append((e, f"more than {MAX_EDGES} edges"))
                    continue
                path = _path(deps, dep, svc)
                if path is not None:
                    ignored.append((e, "would close the cycle " + " -> ".join([svc, *path])))
                    continue
                edges.append(e)
                seen.add(e)
                deps.setdefault(svc, []).append(dep)
        self.edges, self._deps, self.ignored = edges, deps, ignored
        self._dirty = False

    def evaluate(self, statuses: Mapping[str, str]) -> GraphResult:
        """Root causes and ``impacted_by`` for the components' current ``statuses``.

        Nodes are the components in ``statuses`` plus any edge end not among them (status
        ``unknown``: e.g. a declared dependency that nothing monitors).
        """
        if self._dirty:
            self._rebuild()
        deps = self._deps
        status = dict(statuses)
        for a, b in self.edges:
            status.setdefault(a, "unknown")
            status.setdefault(b, "unknown")
        bad = {c for c, s in status.items() if s in _BAD}
        roots = {c for c in bad if not any(d in bad for d in deps.get(c, ()))}
        # reach(c): the roots reached from a *bad* c through bad components (c a root: {c}).
        memo: dict[str, frozenset[str]] = {}

        def reach(c: str) -> frozenset[str]:
            got = memo.get(c)
            if got is None:
                if c in roots:
                    got = frozenset((c,))
                else:
                    acc: set[str] = set()
                    for d in deps.get(c, ()):
                        if d in bad:
                            acc |= reach(d)
                    got = frozenset(acc)
                memo[c] = got
            return got

        keys = status.keys()
        if keys != self._order_of:
            self._order, self._order_of = sorted(keys), set(keys)
        nodes: dict[str, Node] = {}
        impacts: dict[str, list[str]] = {r: [] for r in roots}
        for c in self._order:
            ordered: tuple[str, ...] = ()
            if bad:
                imp: set[str] = set()
                for d in deps.get(c, ()):
                    if d in bad:
                        imp |= reach(d)
                if imp:
                    imp.discard(c)
                    ordered = tuple(sorted(imp))
                    for r in ordered:
                        impacts[r].append(c)
            nodes[c] = Node(status[c], ordered, c in roots)
        order = sorted(roots, key=lambda r: (status[r] != "down", r))
        return GraphResult(nodes=nodes, edges=list(self.edges),
                           roots={r: tuple(impacts[r]) for r in order}, ignored=list(self.ignored))


def _path(deps: Mapping[str, Sequence[str]], src: str, dst: str) -> list[str] | None:
    """A dependency path from ``src`` to ``dst`` (both included), or None."""
    if src == dst:
        return [src]
    prev: dict[str, str] = {src: src}
    queue = [src]
    for node in queue:
        for nxt in deps.get(node, ()):
            if nxt not in prev:
                prev[nxt] = node
                if nxt == dst:
                    out = [dst]
                    while out[-1] != src:
                        out.append(prev[out[-1]])
                    return out[::-1]
                queue.append(nxt)
    return None


class GraphSection:
    """The view's ``graph`` section builder (view.py): plug in after ``health``.

        fold.view.add("graph", GraphSection(config.graph, config.aggregator), after="health")

    Statuses come from ``health.components``; edges from the configuration plus every service's
    ``depends_on`` (the union over its instances' latest status messages).
    """

    def __init__(self, cfg: GraphConfig, known: Iterable[str]) -> None:
        self.graph = DependencyGraph(cfg.resolved(known))

    def __call__(self, ctx: SectionContext) -> dict[str, object]:
        comps = ctx.view["health"]["components"]
        graph = self.graph
        for svc in ctx.state.services.values():
            declared: set[str] = set()
            for inst in svc.instances.values():
                if inst.depends_on:
                    declared.update(inst.depends_on)
            graph.set_declared(svc.name, declared)
        return graph.evaluate({c: v["status"] for c, v in comps.items()}).section()
