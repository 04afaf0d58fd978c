"""``GET /operator/system/graph``: the view's dependency graph and root causes (docs/view.md, section
``graph``), for scripts and screens that poll rather than hold a WebSocket. Served from the view in
memory, like the seed's sections; every member present (``null`` or ``[]`` where the view has none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.routes import HttpRequest, Reply

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["get_graph", "install"]

PATH = "/operator/system/graph"


def graph_body(section: Any) -> dict[str, Any]:
    """The section with its members filled in (the view's canonical form drops empty ones)."""
    sec = section if isinstance(section, dict) else {}
    raw = sec.get("nodes")
    nodes: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return {
        "nodes": {name: {"status": n.get("status", "unknown"),
                         "impacted_by": list(n.get("impacted_by") or []),
                         "root_cause": bool(n.get("root_cause"))}
                  for name, n in nodes.items() if isinstance(n, dict)},
        "edges": list(sec.get("edges") or []),
        "roots": list(sec.get("roots") or []),
        "summary": sec.get("summary"),
        "ignored": list(sec.get("ignored") or []),
    }


async def get_graph(req: HttpRequest) -> Reply:
    state = req.gateway.store.state
    if state is None:
        return Reply(503, {"error": "no_view", "message": "no view received from the aggregator yet"},
                     [("Retry-After", "2")])
    return Reply(200, graph_body(state.get("graph")))


def install(gw: Gateway) -> None:
    gw.routes.get(PATH, get_graph, section="graph")
