"""The endpoint modules the gateway installs: one line each (docs/gateway.md, "Adding an endpoint").

Each entry is a function ``install(gw: Gateway) -> None`` that adds its routes with
``gw.routes.get(...)`` / ``gw.routes.post(...)`` (gateway/routes.py) and, when it holds resources
(a database pool), registers ``gw.on_start(...)`` / ``gw.on_stop(...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from gateway import alerts_api, events_api, graph_api, history_api, view_api

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["INSTALLERS"]

INSTALLERS: Final[list[Callable[[Gateway], None]]] = [
    history_api.install,
    alerts_api.install,
    events_api.install,
    graph_api.install,
    view_api.install,  # h19: view?at= (issue 19)
]
