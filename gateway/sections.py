"""What each WebSocket client gets of the view: sections, and per-instance detail only where asked.

Pure functions over the view the aggregator publishes (which always carries every instance, in
``services.<name>.instances``). design.md section 12, docs/websocket.md:

- no ``sections`` (the default stream): every top-level section, with ``services`` cut down to the
  per-service summaries (each service's entry without ``instances``), so the stream does not grow
  with the number of instances;
- ``sections`` listed: those sections (``meta`` always); ``services`` is the summaries;
- ``services/<name>`` in ``sections``: ``services.<name>`` whole, with its instances (alone, or beside
  the other summaries when ``services`` is listed too).

The same rules apply to a snapshot's ``state`` and to a patch's merge patch, so a client that applies
its patches to its snapshot holds exactly the filtered view (tests/gateway/test_sections.py).
"""

from __future__ import annotations

import re
from collections.abc import Set
from typing import Any, Final

__all__ = ["SERVICE_PREFIX", "filter_view", "is_service_section", "not_allowed"]

SERVICE_PREFIX: Final = "services/"
_SERVICE_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def is_service_section(name: str) -> bool:
    """``services/<name>`` with a valid service name (the contract's segment pattern)."""
    return name.startswith(SERVICE_PREFIX) and bool(_SERVICE_NAME.match(name[len(SERVICE_PREFIX):]))


def not_allowed(wanted: Set[str], allowed: Set[str]) -> set[str]:
    """The sections of ``wanted`` outside ``allowed``; ``services/<name>`` is allowed with ``services``."""
    return {s for s in wanted - allowed
            if not (is_service_section(s) and "services" in allowed)}


def _summaries(services: Any) -> Any:
    if not isinstance(services, dict):
        return services
    out: dict[str, Any] = {}
    for name, entry in services.items():
        if not isinstance(entry, dict):
            out[name] = entry  # a null in a patch: the service is gone
        elif "instances" not in entry:
            out[name] = entry
        elif len(entry) > 1:
            out[name] = {k: v for k, v in entry.items() if k != "instances"}
        # else: a patch entry that changed only instances: nothing for a summary client
    return out


def filter_view(view: dict[str, Any], sections: frozenset[str] | None) -> dict[str, Any]:
    """The part of ``view`` (a whole view, or a patch's merge patch) that ``sections`` asks for."""
    if sections is None:
        if "services" not in view:
            return view
        out = dict(view)
        out["services"] = _summaries(view["services"])
        if not out["services"]:
            del out["services"]  # a patch that changed only instances
        return out
    out = {k: v for k, v in view.items() if k in sections or k == "meta"}
    named = [s[len(SERVICE_PREFIX):] for s in sections if s.startswith(SERVICE_PREFIX)]
    services = view.get("services")
    if "services" in out:
        out["services"] = _summaries(services)
        if not out["services"]:
            del out["services"]
    if named and isinstance(services, dict):
        picked = {n: services[n] for n in named if n in services}
        if picked:
            merged = dict(out["services"]) if isinstance(out.get("services"), dict) else {}
            merged.update(picked)
            out["services"] = merged
    return out
