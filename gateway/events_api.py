"""The events endpoints and the live tail (design.md section 11), installed into the gateway.

    GET /operator/system/events?from=&to=&service=&instance=&severity=&type=&q=&limit=&before=
        -> {"events": [{"id", "ts", "timestamp", "service", "instance", "type", "severity",
                        "message", "attrs"}], "next": <cursor or null>}          newest first
    GET /operator/system/events/counts?from=&to=&service=
        -> {"from", "to", "total", "by_service", "by_type", "by_severity"}   warning or worse
    WebSocket {"type": "tail", "filter": {...}} / {"type": "untail"}
        -> {"type": "events", "dropped": n, "events": [...]} as matching events arrive

Parameters are parsed by the gateway's strict parser (gateway/query.py): an unknown, repeated, empty
or malformed one is a 400 naming it. ``from``/``to``: Unix seconds, ISO 8601, ``now`` or ``-15m``,
``-6h``, ``-7d`` (``from`` defaults to the whole retention, ``to`` to now); ``service``, ``instance``
and ``type`` take one name or several, comma-separated; ``severity=warning`` means warning or worse;
``q`` all words (history/events.py says how words are split); ``limit`` 1..1000 (default 100);
``before`` the ``next`` of the previous page. History off: 404 with the reason; database away: 503.
A display token may search and tail only when ``events`` is in its ``gateway.display_sections``.

The tail reads the bus, not the database, so it works while the history database is away: the
gateway subscribes to ``<root>/v1/svc/+/+/events`` and takes the aggregator's own feed entries
(quarantined messages, state changes) from the view patches (gateway/events_tail.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec

from gateway.errors import ProtocolError
from gateway.events_tail import TailHub, decode_tail_filter, event_from_feed
from gateway.query import Time
from gateway.routes import HttpRequest, Reply
from history.events import (
    MAX_LIMIT,
    EventFilter,
    EventQueryError,
    decode_cursor,
    error_counts,
    search_events,
)
from telemetry_bus.contract import METRIC_PATTERN, SEGMENT_PATTERN

if TYPE_CHECKING:
    import asyncpg

    from gateway.server import Client, Gateway

__all__ = ["EVENTS_SECTION", "CountsParams", "EventsApi", "EventsParams", "install"]

log = logging.getLogger("opsdash.gateway.events")

#: The display-section name that lets a display token search and tail events.
EVENTS_SECTION: Final = "events"

_Segment = Annotated[str, msgspec.Meta(pattern=SEGMENT_PATTERN)]
_Kind = Annotated[str, msgspec.Meta(pattern=METRIC_PATTERN)]
_Severity = Literal["debug", "info", "warning", "error", "critical"]


class EventsParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    from_: Time | None = msgspec.field(default=None, name="from")
    to: Time | None = None
    service: Annotated[list[_Segment], msgspec.Meta(max_length=64)] | None = None
    instance: Annotated[list[_Segment], msgspec.Meta(max_length=256)] | None = None
    severity: _Severity | None = None
    type: Annotated[list[_Kind], msgspec.Meta(max_length=64)] | None = None
    q: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = 100
    before: Annotated[str, msgspec.Meta(max_length=40)] | None = None


class CountsParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    from_: Time | None = msgspec.field(default=None, name="from")
    to: Time | None = None
    service: Annotated[list[_Segment], msgspec.Meta(max_length=64)] | None = None


def _clamp(t: float | None) -> float | None:
    """A time within what can be stored (the parser accepts -999999999d): beyond it nothing differs."""
    return None if t is None else min(max(t, 0.0), 1e11 - 1)


def _bad(exc: EventQueryError) -> Reply:
    return Reply(400, {"error": "bad_request", "message": f"parameter {exc.parameter!r}: {exc.message}",
                       "parameter": exc.parameter})


class EventsApi:
    """The events endpoints and the tail of one gateway (see the module docstring)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.tail: TailHub[Client] = TailHub(gw.cfg.tail_rate_per_s, gw.cfg.tail_burst)
        self._pool: asyncpg.Pool | None = None
        self.db_errors = 0
        self.refused = 0

    # -- the store -------------------------------------------------------------------------------

    async def _pool_or_reply(self) -> asyncpg.Pool | Reply:
        from history.config import HistoryConfig
        from history.recorder import HISTORY_OFF

        # [history] of the whole config (gw.app_config, set by run_gateway): off when absent
        cfg = getattr(getattr(self.gw, "app_config", None), "history", None)
        if not isinstance(cfg, HistoryConfig) or not cfg.enabled:
            return Reply(404, {"error": "history_off", "message": HISTORY_OFF})
        if self._pool is None:
            import asyncpg

            from history.schema import migrate

            try:
                pool = await asyncpg.create_pool(cfg.url, min_size=0, max_size=cfg.pool_size,
                                                 command_timeout=10, timeout=5)
                try:
                    async with pool.acquire() as conn:
                        await migrate(conn)  # the gateway may start before any recorder
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                return self._unavailable(exc)
        return self._pool

    def _unavailable(self, exc: BaseException) -> Reply:
        self.db_errors += 1
        log.warning("events: history database unavailable: %s", exc)
        return Reply(503, {"error": "history_unavailable",
                           "message": f"the history database does not answer ({type(exc).__name__})"},
                     [("Retry-After", "5")])

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # -- HTTP ------------------------------------------------------------------------------------

    async def get_events(self, req: HttpRequest) -> Reply:
        p: EventsParams = req.params
        try:
            f = EventFilter(
                start=_clamp(p.from_), end=_clamp(p.to), services=tuple(p.service or ()),
                instances=tuple(p.instance or ()),
                severity=p.severity, types=tuple(p.type or ()), q=p.q, limit=p.limit,
                before=decode_cursor(p.before) if p.before is not None else None)
        except EventQueryError as exc:
            return _bad(exc)
        pool = await self._pool_or_reply()
        if isinstance(pool, Reply):
            return pool
        import asyncpg

        try:
            body = await search_events(pool, f)
        except EventQueryError as exc:
            return _bad(exc)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            return self._unavailable(exc)
        return Reply(200, body)

    async def get_counts(self, req: HttpRequest) -> Reply:
        p: CountsParams = req.params
        end = _clamp(p.to if p.to is not None else req.wall_now) or 0.0
        start = _clamp(p.from_ if p.from_ is not None else end - 3600) or 0.0
        pool = await self._pool_or_reply()
        if isinstance(pool, Reply):
            return pool
        import asyncpg

        try:
            body = await error_counts(pool, start, end, tuple(p.service or ()))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            return self._unavailable(exc)
        return Reply(200, body)

    # -- the live tail ---------------------------------------------------------------------------

    async def msg_tail(self, c: Client, msg: dict[str, Any]) -> None:
        """Start or replace the tail; the answer is a ``tail`` frame (ok, or why not).

        A refused tail never closes the socket: the same connection carries the dashboard's view, and
        a wall screen that opens the log page, or a search box holding "!!!", must not lose it (the
        client would reconnect and ask again, in a loop)."""
        if not c.live or c.principal is None:
            raise ProtocolError("tail before hello", "unauthorized", 4401)
        allowed = c.principal.sections
        if allowed is not None and EVENTS_SECTION not in allowed:
            self.refused += 1
            self._status(c, False, "forbidden", f"a {c.principal.role} token may not tail events "
                         f"(gateway.display_sections lacks {EVENTS_SECTION!r})")
            return
        try:
            f = decode_tail_filter(msg.get("filter"))
        except ValueError as exc:
            self.refused += 1
            self.tail.unsubscribe(c)
            self._status(c, False, "bad_request", str(exc)[:300])
            return
        self.tail.subscribe(c, f, self.gw.mono_clock())
        self._status(c, True)

    def _status(self, c: Client, ok: bool, code: str | None = None, message: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "tail", "ok": ok}
        if code is not None:
            frame.update(code=code, message=message)
        self.gw.send_frame(c, msgspec.json.encode(frame))

    async def msg_untail(self, c: Client, msg: dict[str, Any]) -> None:
        self.tail.unsubscribe(c)

    def _send(self, frames: list[tuple[Client, bytes]]) -> None:
        for c, data in frames:
            if not c.live or c.conn not in self.gw.clients:
                self.tail.unsubscribe(c)
                continue
            if self.gw.client_buffer(c) > self.gw.cfg.send_buffer_limit_bytes:
                continue  # a client that cannot keep up misses tail events (the view comes first)
            self.gw.send_frame(c, data)

    def on_bus_event(self, service: str, instance: str, payload: bytes) -> None:
        if not self.tail:
            return
        from telemetry_bus.contract import decode_event

        try:
            ev = decode_event(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # the aggregator quarantines it; the tail shows that entry from the feed
        self._send(self.tail.offer_bus_event(service, instance, ev, self.gw.mono_clock()))

    def on_feed(self, entries: list[dict[str, Any]]) -> None:
        if not self.tail:
            return
        now = self.gw.mono_clock()
        for entry in reversed(entries):  # oldest first
            ev = event_from_feed(entry)
            if ev is not None:
                self._send(self.tail.offer(ev, now))

    def housekeeping(self) -> None:
        for c in [c for c in self.tail.subs if not c.live or c.conn not in self.gw.clients]:
            self.tail.unsubscribe(c)
        self._send(self.tail.flush_drops(self.gw.mono_clock()))


def install(gw: Gateway) -> None:
    api = EventsApi(gw)
    gw.events = api
    gw.routes.get("/operator/system/events", api.get_events, query=EventsParams, section=EVENTS_SECTION)
    gw.routes.get("/operator/system/events/counts", api.get_counts, query=CountsParams,
                  section=EVENTS_SECTION)
    gw.on_message("tail", api.msg_tail)
    gw.on_message("untail", api.msg_untail)
    gw.on_bus_events(api.on_bus_event, api.on_feed)
    gw.on_housekeeping(api.housekeeping)
    gw.on_stop(api.close)
