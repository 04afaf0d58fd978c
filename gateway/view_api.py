"""``GET /operator/system/view?at=T[&sections=a,b]``: the whole view as it was at a past moment (issue 19).

The view as the aggregator published it at the last tick at or before ``T`` (times as the history
endpoints take them: Unix seconds, ISO 8601, ``now``, ``-15m``), rebuilt from the recorded view stream
(history/viewstream.py): the latest snapshot at or before ``T`` plus the patches after it, applied as a
live client applies them, so every section is what a client of the default stream held then;
``meta.generated_at`` (and ``meta.seq``) say which tick. ``sections`` as on the WebSocket (``meta``
always); ``services/<name>`` (per-instance detail) is not recorded: 400.

Before the first record or beyond the retention: 404 ``{"error": "not_recorded", "oldest": T0}``.
History off: 404 ``history_off``; database away: 503. Display tokens get their ``display_sections``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Final

import asyncpg
import msgspec

from gateway.errors import ProtocolError
from gateway.query import Time
from gateway.routes import HttpRequest, Reply
from gateway.sections import filter_view, is_service_section, not_allowed
from gateway.store import parse_sections
from history.config import HistoryConfig
from history.recorder import HISTORY_OFF
from history.schema import migrate
from history.viewstream import oldest, view_at

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["PATH", "ViewApi", "ViewParams", "install"]

log = logging.getLogger("opsdash.gateway.view")

PATH: Final = "/operator/system/view"
_DB_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
SectionName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{1,32}(/[a-z0-9][a-z0-9_.-]{0,62})?$")]


class ViewParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    at: Time
    sections: Annotated[list[SectionName], msgspec.Meta(max_length=16)] | None = None


def _bad(param: str, message: str) -> Reply:
    return Reply(400, {"error": "bad_request", "parameter": param, "message": f"{param}: {message}"})


class ViewApi:
    """A small reading pool, opened on first use (a database away at start does not stop the gateway)."""

    def __init__(self, cfg: HistoryConfig) -> None:
        self.cfg = cfg
        self._pool: asyncpg.Pool | None = None
        self._migrated = False

    async def _conn_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self.cfg.url, min_size=0, max_size=self.cfg.pool_size,
                                                   command_timeout=10, timeout=5)
        if not self._migrated:
            async with self._pool.acquire() as conn:
                await migrate(conn)  # the gateway may start before any recorder
            self._migrated = True
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def get_view(self, req: HttpRequest) -> Reply:
        p: ViewParams = req.params
        if not self.cfg.enabled:
            return Reply(404, {"error": "history_off", "message": HISTORY_OFF})
        try:
            sections = parse_sections(p.sections)
        except ProtocolError as exc:
            return _bad("sections", str(exc))
        if sections is not None and any(is_service_section(s) for s in sections):
            return _bad("sections", "services/<name> (per-instance detail) is not recorded; the view stream "
                                    "keeps the default stream (services as per-service summaries)")
        principal = req.principal
        allowed = principal.sections if principal is not None else None
        if allowed is not None:
            if sections is None:
                sections = frozenset(allowed)
            elif denied := not_allowed(sections, allowed):
                return Reply(403, {"error": "forbidden",
                                   "message": f"this token may not read {', '.join(sorted(denied))}"})
        try:
            pool = await self._conn_pool()
            async with pool.acquire() as conn:
                found = await view_at(conn, p.at)
                first = await oldest(conn) if found is None else None
        except _DB_ERRORS as exc:
            log.warning("view?at= query failed: %s", exc)
            return Reply(503, {"error": "history_unavailable",
                               "message": f"history database unavailable: {type(exc).__name__}: {exc}"[:300]})
        if found is None:
            why = ("nothing recorded yet" if first is None else
                   f"nothing recorded at or before {p.at} (before the first record or beyond the "
                   f"{self.cfg.retention_days} d retention); the oldest recorded view is at {first}")
            return Reply(404, {"error": "not_recorded", "message": why, "oldest": first})
        state = found.state if sections is None else filter_view(found.state, sections)
        return Reply(200, state)


def install(gw: Gateway) -> None:
    """Add the route; the config comes from ``gw.app_config.history`` (off when absent)."""
    cfg = getattr(getattr(gw, "app_config", None), "history", None)
    api = ViewApi(cfg if isinstance(cfg, HistoryConfig) else HistoryConfig())
    gw.routes.get(PATH, api.get_view, query=ViewParams)
    gw.on_stop(api.close)
