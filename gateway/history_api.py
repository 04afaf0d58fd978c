"""The history endpoints (design.md section 8; docs/history.md), installed in the gateway's route table.

    GET /operator/system/history                               the catalogue
    GET /operator/system/history?series=a,b&from=F&to=T&step=S  series
    GET /operator/system/history/states?from=F&to=T             component state timelines
    GET /operator/system/history/status                         {"enabled", "message", "retention_days"}

The handlers are plain functions of (reader, parsed parameters, now) → ``(status, JSON body)``; the
query is parsed strictly by gateway/query.py (400 naming the parameter). ``from`` defaults to ``-15m``
(``-24h`` for states), ``to`` to ``now``. History off (no ``history.url``): 404 with the reason;
database away: 503 with the reason. Display tokens may read history where they may read ``series``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any, Final

import asyncpg
import msgspec

from gateway.query import Time
from gateway.routes import HttpRequest, Reply
from history.config import HistoryConfig
from history.query import HistoryReader, QueryError
from history.recorder import HISTORY_OFF
from history.schema import migrate

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["HistoryApi", "HistoryParams", "StatesParams", "history_catalogue", "history_series",
           "history_states", "install"]

log = logging.getLogger("opsdash.gateway.history")

Answer = tuple[int, dict[str, Any]]
PATH: Final = "/operator/system/history"
SeriesName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_:.-]{1,200}$")]
_DB_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class HistoryParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    series: Annotated[list[SeriesName], msgspec.Meta(max_length=32)] | None = None
    from_: Time | None = msgspec.field(default=None, name="from")
    to: Time | None = None
    step: Annotated[int, msgspec.Meta(ge=1, le=366 * 86400)] | None = None


class StatesParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    from_: Time | None = msgspec.field(default=None, name="from")
    to: Time | None = None


def _bad(param: str, message: str) -> Answer:
    return 400, {"error": "bad_request", "parameter": param, "message": f"{param}: {message}"}


async def history_catalogue(reader: HistoryReader) -> Answer:
    return 200, await reader.catalogue()


async def history_series(reader: HistoryReader, p: HistoryParams, now: float) -> Answer:
    if not p.series:
        return _bad("series", "required with from/to/step (without any parameter: the catalogue)")
    frm = p.from_ if p.from_ is not None else now - 900
    to = p.to if p.to is not None else now
    try:
        return 200, await reader.series(list(dict.fromkeys(p.series)), frm, to, p.step)
    except QueryError as exc:
        return _bad(exc.param, str(exc).split(": ", 1)[1])


async def history_states(reader: HistoryReader, p: StatesParams, now: float) -> Answer:
    frm = p.from_ if p.from_ is not None else now - 86400
    to = p.to if p.to is not None else now
    try:
        return 200, await reader.states(frm, to, now)
    except QueryError as exc:
        return _bad(exc.param, str(exc).split(": ", 1)[1])


class HistoryApi:
    """The gateway's side of history: a small reading pool, opened on first use (a database that is
    away at start does not stop the gateway), and the two routes."""

    def __init__(self, cfg: HistoryConfig) -> None:
        self.cfg = cfg
        self._pool: asyncpg.Pool | None = None
        self._migrated = False

    async def _reader(self) -> HistoryReader:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self.cfg.url, min_size=0, max_size=self.cfg.pool_size,
                                                   command_timeout=10, timeout=5)
        if not self._migrated:
            async with self._pool.acquire() as conn:
                await migrate(conn)  # the gateway may start before any recorder
            self._migrated = True
        return HistoryReader(self._pool, self.cfg.retention_days)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _answer(self, states: bool, params: Any, now: float) -> Reply:
        if not self.cfg.enabled:
            return Reply(404, {"error": "history_off", "message": HISTORY_OFF})
        try:
            reader = await self._reader()
            if states:
                status, body = await history_states(reader, params, now)
            elif params == HistoryParams():
                status, body = await history_catalogue(reader)
            else:
                status, body = await history_series(reader, params, now)
        except _DB_ERRORS as exc:
            log.warning("history query failed: %s", exc)
            return Reply(503, {"error": "history_unavailable",
                               "message": f"history database unavailable: {type(exc).__name__}: {exc}"[:300]})
        return Reply(status, body)

    async def get_history(self, req: HttpRequest) -> Reply:
        return await self._answer(False, req.params, req.wall_now)

    async def get_states(self, req: HttpRequest) -> Reply:
        return await self._answer(True, req.params, req.wall_now)

    async def get_status(self, req: HttpRequest) -> Reply:
        """Whether history is on (200 either way), so a page can say so without provoking a 404."""
        if not self.cfg.enabled:
            return Reply(200, {"enabled": False, "message": HISTORY_OFF, "retention_days": None})
        return Reply(200, {"enabled": True, "message": None, "retention_days": self.cfg.retention_days})


def install(gw: Gateway) -> None:
    """Add the history routes; the config comes from ``gw.app_config.history`` (off when absent)."""
    cfg = getattr(getattr(gw, "app_config", None), "history", None)
    api = HistoryApi(cfg if isinstance(cfg, HistoryConfig) else HistoryConfig())
    gw.routes.get(PATH, api.get_history, query=HistoryParams, section="series")
    gw.routes.get(PATH + "/states", api.get_states, query=StatesParams, section="series")
    gw.routes.get(PATH + "/status", api.get_status, section="series")
    gw.on_stop(api.close)
    if not api.cfg.enabled:
        log.info("gateway: history is off (OPSDASH_HISTORY_URL unset): the history endpoints answer 404")
