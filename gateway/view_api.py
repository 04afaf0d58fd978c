"""``GET /operator/system/view?at=T[&sections=a,b]``: the whole view as it was at a past moment (issue 19).

The view as the aggregator published it at the last tick at or before ``T`` (times as the history
endpoints take them: Unix seconds, ISO 8601, ``now``, ``-15m``), rebuilt from the recorded view stream
(history/viewstream.py): the latest kept snapshot at or before ``T`` plus the patches after it, applied as a
live client applies them, so every section is what a client of the default stream held then;
``meta.generated_at`` (and ``meta.seq``) say which tick. ``sections`` as on the WebSocket (``meta``
always); ``services/<name>`` (per-instance detail) is not recorded: 400.

Before the first record or beyond the retention: 404 ``{"error": "not_recorded", "oldest": T0}``.
History off: 404 ``history_off``; database away: 503. Display tokens get their ``display_sections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from typing import TYPE_CHECKING, Annotated, Any, Final

import asyncpg
import msgspec

from gateway.errors import ProtocolError
from gateway.query import QueryError, Time, parse_time
from gateway.routes import HttpRequest, Reply
from gateway.sections import filter_view, is_service_section, not_allowed
from gateway.store import parse_sections
from history.config import HistoryConfig
from history.recorder import HISTORY_OFF
from history.schema import migrate
from history.viewstream import ViewAt, messages_after, oldest, view_at

if TYPE_CHECKING:
    from gateway.server import Client, Gateway

__all__ = ["MAX_REPLAYS", "MAX_SPEED", "PATH", "ViewApi", "ViewParams", "install"]

log = logging.getLogger("opsdash.gateway.view")

PATH: Final = "/operator/system/view"
_DB_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
#: Fastest replay (x real time), and most replays at once per gateway (each reads the database).
MAX_SPEED: Final = 60.0
MAX_REPLAYS: Final = 32
#: A replay this close to the present (wall clock) has caught up: the client goes back to live.
LIVE_MARGIN_S: Final = 3.0
_encode = msgspec.json.encode
SectionName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{1,32}(/[a-z0-9][a-z0-9_.-]{0,62})?$")]


class ViewParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    at: Time
    sections: Annotated[list[SectionName], msgspec.Meta(max_length=16)] | None = None


def _bad(param: str, message: str) -> Reply:
    return Reply(400, {"error": "bad_request", "parameter": param, "message": f"{param}: {message}"})


class ViewApi:
    """A small reading pool, opened on first use (a database away at start does not stop the gateway),
    the ``view?at=`` route and the WebSocket's ``replay`` / ``live`` messages."""

    def __init__(self, cfg: HistoryConfig, gw: Gateway | None = None) -> None:
        self.cfg = cfg
        self.gw = gw
        self._pool: asyncpg.Pool | None = None
        self._migrated = False
        self._replays: dict[Client, asyncio.Task[None]] = {}

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
        for task in list(self._replays.values()):
            task.cancel()
        for task in list(self._replays.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
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


    # -- replay over the WebSocket (docs/websocket.md) -----------------------------------------------
    def _refuse(self, c: Client, code: str, message: str, **extra: Any) -> None:
        assert self.gw is not None
        self.gw.send_frame(c, _encode({"type": "replay", "ok": False, "code": code, "message": message,
                                       **extra}))

    async def msg_replay(self, c: Client, msg: dict[str, Any]) -> None:
        """``{"type": "replay", "from": T, "speed": S}``: start, seek or change speed (0: paused at T).
        A refusal is a ``replay`` frame with ``ok`` false; the socket stays open on the live view."""
        assert self.gw is not None
        gw = self.gw
        if not c.live:
            raise ProtocolError("replay before hello")
        raw_from, speed = msg.get("from"), msg.get("speed", 1)
        try:
            if isinstance(raw_from, bool) or not isinstance(raw_from, int | float | str):
                raise QueryError("from", "from: a time (Unix seconds, ISO 8601, now, -15m) is required")
            frm = float(raw_from) if not isinstance(raw_from, str) else parse_time(raw_from, time.time())
            if not math.isfinite(frm):
                raise QueryError("from", "from: not a finite time")
        except QueryError as exc:
            self._refuse(c, "bad_request", str(exc), field="from")
            return
        if (isinstance(speed, bool) or not isinstance(speed, int | float)
                or not (speed == 0 or 1 <= speed <= MAX_SPEED)):
            self._refuse(c, "bad_request", f"speed: 0 (paused) or 1 to {MAX_SPEED:g}, got {speed!r:.40}",
                         field="speed")
            return
        if not self.cfg.enabled:
            self._refuse(c, "history_off", HISTORY_OFF)
            return
        if c not in self._replays and len(self._replays) >= MAX_REPLAYS:
            self._refuse(c, "too_many_replays", f"this gateway runs {MAX_REPLAYS} replays; try later")
            return
        self._stop_replay(c)
        try:
            pool = await self._conn_pool()
            async with pool.acquire() as conn:
                found = await view_at(conn, frm)
                first = await oldest(conn) if found is None else None
        except _DB_ERRORS as exc:
            self._refuse(c, "history_unavailable", f"history database unavailable: {type(exc).__name__}")
            return
        if found is None:
            self._refuse(c, "not_recorded", f"nothing recorded at or before {frm}", oldest=first)
            return
        c.replay = True  # the gateway sends no live view frames meanwhile (gateway/server.py)
        gw.send_frame(c, _encode({"type": "replay", "ok": True, "from": frm, "speed": float(speed),
                                  "seq": found.seq, "ts": found.ts}))
        gw.send_frame(c, _encode({"type": "snapshot", "replay": True, "seq": found.seq, "ts": found.ts,
                                  "state": filter_view(found.state, c.sections)}))
        if speed > 0:
            task = asyncio.create_task(self._play(c, frm, float(speed), found), name="gateway:replay")
            self._replays[c] = task
            task.add_done_callback(functools.partial(self._done, c))

    def _done(self, c: Client, task: asyncio.Task[None]) -> None:
        if self._replays.get(c) is task:
            del self._replays[c]
        if not task.cancelled() and task.exception() is not None:
            log.error("replay failed", exc_info=task.exception())

    def _stop_replay(self, c: Client) -> None:
        task = self._replays.pop(c, None)
        if task is not None:
            task.cancel()

    async def msg_live(self, c: Client, msg: dict[str, Any]) -> None:
        """``{"type": "live"}``: end the replay; the live snapshot follows at once."""
        self._back_to_live(c)

    def _back_to_live(self, c: Client) -> None:
        assert self.gw is not None
        self._stop_replay(c)
        c.replay = None
        c.seq = None  # the next tick sends a snapshot anyway; send it now
        store = self.gw.store
        if store.state is not None:
            self.gw.send_frame(c, store.snapshot_message(c.sections))
            c.seq = store.seq

    async def _play(self, c: Client, frm: float, speed: float, at: ViewAt) -> None:
        """Send the recorded patches after ``at`` when their time comes on the replay clock
        (``frm`` at the start, ``speed`` x real time); a gap (lost patch) waits for the next snapshot, a
        snapshot of a restarted aggregator (lower seq) replaces the view."""
        assert self.gw is not None
        gw, loop = self.gw, asyncio.get_running_loop()
        wall0 = loop.time()
        seq, gap = at.seq, False
        cursor = (at.ts, at.seq, True)  # the last message handled: (ts, seq, is a snapshot)
        sections = c.sections
        want_series = sections is None or "series" in sections
        want_errors = sections is None or "errors" in sections
        while gw.client_buffer(c) >= 0:
            horizon = min(frm + (loop.time() - wall0 + 2.0) * speed, time.time() - LIVE_MARGIN_S)
            pool = await self._conn_pool()
            async with pool.acquire() as conn:
                batch = await messages_after(conn, *cursor, horizon)
            if not batch:
                position = frm + (loop.time() - wall0) * speed
                if position >= time.time() - LIVE_MARGIN_S:
                    gw.send_frame(c, _encode({"type": "replay", "ok": True, "ended": "caught_up"}))
                    self._replays.pop(c, None)
                    self._back_to_live(c)
                    return
                await asyncio.sleep(min(1.0, max(0.05, (horizon - position) / speed)))
                continue
            for m in batch:
                due = wall0 + (m.ts - frm) / speed
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                cursor = (m.ts, m.seq, m.base is None)
                if m.base is None:  # a snapshot: sent only after a gap or an aggregator restart
                    if m.seq != seq:
                        gw.send_frame(c, _encode({"type": "snapshot", "replay": True, "seq": m.seq,
                                                  "ts": m.ts, "state": filter_view(m.body, sections)}))
                        seq, gap = m.seq, False
                    continue
                if m.seq <= seq or gap:
                    continue
                if m.base != seq:
                    gap = True  # a lost patch: the next snapshot resumes
                    continue
                frame: dict[str, Any] = {
                    "type": "patch", "replay": True, "seq": m.seq, "base": m.base, "ts": m.ts,
                    "patch": filter_view(m.body.get("patch") or {}, sections),
                    "append": (m.body.get("append") or {}) if want_series else {}}
                if want_errors and m.body.get("errors"):
                    frame["errors"] = m.body["errors"]
                gw.send_frame(c, _encode(frame))
                seq = m.seq


def install(gw: Gateway) -> None:
    """Add the route and the replay messages; the config comes from ``gw.app_config.history``."""
    cfg = getattr(getattr(gw, "app_config", None), "history", None)
    api = ViewApi(cfg if isinstance(cfg, HistoryConfig) else HistoryConfig(), gw)
    gw.routes.get(PATH, api.get_view, query=ViewParams)
    gw.on_message("replay", api.msg_replay)
    gw.on_message("live", api.msg_live)
    gw.on_stop(api.close)
