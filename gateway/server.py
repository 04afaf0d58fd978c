"""The gateway process: MQTT view in, WebSocket push + REST + static frontend out, on one port.

    gw = Gateway(config.gateway, config.mqtt)
    async with gw:                 # listens, subscribes <root>/v1/view/#, runs its loops
        print(gw.port)
        await gw.wait_closed()

The view itself lives in the pure :class:`gateway.store.ViewStore`; this module only moves bytes:

- one MQTT loop (aiomqtt; reconnects with jittered, capped backoff) feeds the store;
- after each applied patch, one encoded message per section set is broadcast (``websockets.broadcast``
  writes the same bytes to each connection, no await, no per-client encode). A client whose unsent
  bytes exceed ``send_buffer_limit_bytes`` is skipped (it misses patches), gets a fresh snapshot once
  it drains, and is dropped when it stays over the limit for ``lag_drop_after_s``; so its memory is
  bounded by the limit plus one message and it never delays the others;
- a housekeeping loop sends ``meta`` frames on staleness changes (and every ``meta_every_s`` while
  stale), closes sockets whose token expired, and drops stalled clients;
- ``process_request`` answers plain HTTP (REST, /metrics, /healthz, /openapi.json, the frontend) and
  checks Origin, rate and auth before a WebSocket upgrade.

WebSocket protocol: docs/websocket.md. Endpoints and limits: docs/gateway.md, gateway/openapi.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import http
import inspect
import ipaddress
import logging
import math
import os
import random
import socket
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import aiomqtt
import msgspec
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State

from gateway.auth import Authenticator, AuthError, JwksCache, Principal, bearer
from gateway.config import GatewayConfig, parse_listen
from gateway.endpoints import INSTALLERS
from gateway.errors import ProtocolError, decode_json
from gateway.httpserver import BodyConnection, BodyRequest, accepts_gzip, none_match
from gateway.openapi import served_document
from gateway.query import QueryError, Time, parse_query
from gateway.rest import (
    SEED_SECTIONS,
    SERIES_NAME,
    SeriesQueryError,
    prometheus_text,
    section,
    series_query,
)
from gateway.routes import HttpRequest, Match, NoMatch, Reply, RouteTable
from gateway.sections import not_allowed
from gateway.static import StaticFiles
from gateway.store import Outcome, Sections, ViewStore, parse_sections
from telemetry_bus.config import MqttConfig
from telemetry_bus.contract import decode_patch, decode_snapshot, topics
from telemetry_bus.reconnect import Backoff, Brokers, reconnect_forever

__all__ = ["LIVE_PATH", "Gateway", "GatewayFailed", "GatewayStartError"]

log = logging.getLogger("opsdash.gateway")

LIVE_PATH: Final = "/operator/system/live"
OPENAPI_PATH: Final = Path(__file__).with_name("openapi.json")
REPO_DIST: Final = Path(__file__).resolve().parents[1] / "frontend" / "dist"

# Close codes (docs/websocket.md).
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403
CLOSE_AUTH_TIMEOUT: Final = 4408
CLOSE_RATE_LIMITED: Final = 4429
CLOSE_POLICY: Final = 1008
#: Highest hello ``max_rate`` (patches per second) a client may ask for.
MAX_RATE: Final = 20.0

_encoder: Final = msgspec.json.Encoder()
# A background task that dies is restarted after a pause; this many deaths within the window stop
# the gateway (non-zero exit) rather than restart a loop that cannot run.
_RESTART_PAUSE_S: Final = 0.5
_RESTART_LIMIT: Final = 5
_RESTART_WINDOW_S: Final = 60.0
_GZIP_MIN: Final = 1400


class GatewayStartError(Exception):
    """The gateway cannot start as configured (the message says why)."""


class GatewayFailed(RuntimeError):
    """The gateway stopped by itself: a background task kept dying (the process exits non-zero)."""


class TokenBucket:
    """``rate`` per second with bursts of ``burst``; time passed in."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(eq=False)
class Client:
    conn: ServerConnection
    address: str
    bucket: TokenBucket
    principal: Principal | None = None
    sections: Sections = None
    #: Seq of the last view message this client got (None: none yet / must get a snapshot).
    seq: int | None = None
    lagging_since: float | None = None
    live: bool = False
    #: at most this many patches a second (hello ``max_rate``); the ones between are composed into
    #: the next it gets (docs/websocket.md). None: every patch.
    max_rate: float | None = None
    #: our monotonic clock when it last got a view message
    sent_at: float = -math.inf
    #: a replay of the past in progress (gateway/view_api.py): no live view frames meanwhile
    replay: Any = None


MessageHandler = Callable[["Client", dict[str, Any]], Awaitable[None]]
#: (service, instance, payload) of a message on ``<root>/v1/svc/+/+/events``.
BusEventHandler = Callable[[str, str, bytes], None]
#: The error-feed entries a view patch brought (newest first).
FeedHandler = Callable[[list[dict[str, Any]]], None]


#: Why a connection, message or request was refused (``opsdash_gateway_refused_total{reason}``).
REFUSAL_REASONS: Final = (
    "handshake_rate",           # HTTP requests / handshakes over handshake_rate (429)
    "host",                     # Host header not in allowed_hosts (421) or not exactly one (400)
    "origin",                   # WebSocket Origin not allowed (403)
    "max_clients",              # gateway full (503)
    "connections_per_address",  # too many WebSockets from one address (429 / 4429)
    "auth_timeout",             # no hello within auth_timeout_s (4408)
    "message_rate",             # client messages over client_msg_rate (4429)
    "message_too_big",          # client message over max_message_bytes (1009)
    "bad_message",              # undecodable or invalid client message (1008)
    "bad_query",                # query string refused by the strict parser (400)
    "bad_body",                 # request body refused (400)
)


@dataclass
class Counters:
    """The gateway's own figures: in /healthz, and reported on the bus as opsdash-gateway."""

    connections_total: int = 0
    patches_sent_total: int = 0
    snapshots_sent_total: int = 0
    bytes_sent_total: int = 0
    skipped_total: int = 0
    #: patches held back for clients with max_rate (composed into their next one)
    coalesced_total: int = 0
    resyncs_total: int = 0
    dropped_slow_total: int = 0
    auth_failures_total: int = 0
    #: Every reason starts at 0, so a rate() over it works before the first refusal.
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSAL_REASONS, 0))
    bad_messages_total: int = 0
    mqtt_connects_total: int = 0
    feed_errors_total: int = 0
    task_restarts: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


#: On every answer: no MIME sniffing, no Referer to other sites, never inside a frame (clickjacking).
_SECURITY_HEADERS: Final = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                            ("X-Frame-Options", "DENY"))


def content_security_policy(oidc_issuer: str = "") -> str:
    """The page's CSP: only its own scripts, styles and connections (the live WebSocket is 'self'),
    plus the OIDC issuer for the login's token requests; no inline script, no plugins, no framing.
    The built frontend runs under it without a violation (tests/browser/test_security.py)."""
    connect = "'self'"
    if oidc_issuer:
        parts = urlsplit(oidc_issuer)
        if parts.scheme in ("http", "https") and parts.netloc:
            connect += f" {parts.scheme}://{parts.netloc}"
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"font-src 'self'; connect-src {connect}; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")


def _response(status: int, headers: list[tuple[str, str]], body: bytes) -> Response:
    h = Headers(headers)
    for name, value in _SECURITY_HEADERS:
        h[name] = value
    if status != 304:
        h["Content-Length"] = str(len(body))
    h["Date"] = email.utils.formatdate(usegmt=True)
    h["Connection"] = "close"
    return Response(status, http.HTTPStatus(status).phrase, h, body)


def _error(status: int, code: str, message: str, extra: list[tuple[str, str]] | None = None,
           parameter: str | None = None) -> Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if parameter is not None:
        body["parameter"] = parameter
    return _response(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                              *(extra or [])], _encoder.encode(body))


class LiveParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Query of the WebSocket URL (docs/websocket.md): the sections, like a hello's."""

    sections: list[str] | None = None


class SeriesParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Query of ``GET /operator/system/series``."""

    names: Annotated[list[Annotated[str, msgspec.Meta(pattern=SERIES_NAME)]],
                     msgspec.Meta(max_length=64)] | None = None
    since: Time | None = None


def _host_name(host: str) -> str:
    """The name of a Host header without its port, lowercase; IPv6 keeps its brackets off."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host


def _allowed_hosts(cfg: GatewayConfig, listen_host: str) -> frozenset[str] | None:
    """The Host names accepted (None: any). Default: the listen address and the loopback names;
    with a wildcard listen address and no list, any (auth none is refused there, and a token is
    never sent to another site's page, so rebinding gains nothing)."""
    if "*" in cfg.allowed_hosts:
        return None
    if cfg.allowed_hosts:
        return frozenset(_host_name(h) for h in cfg.allowed_hosts)
    if listen_host in ("", "0.0.0.0", "::"):
        return None
    return frozenset({listen_host.lower(), "localhost", "127.0.0.1", "::1"})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Gateway:
    """One gateway: see the module docstring."""

    def __init__(self, cfg: GatewayConfig, mqtt: MqttConfig,
                 mono_clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, app_config: Any = None) -> None:
        self.cfg = cfg
        self.mqtt = mqtt
        #: the whole opsdash Config when run by opsdash: endpoint modules read their section from it
        #: at install time (e.g. ``history``); None in tests that build a bare gateway
        self.app_config = app_config
        # Two clocks, one purpose each: ``mono_clock`` (monotonic) for ages, staleness, rates and
        # timeouts, and every stamp the store keeps; ``wall_clock`` (Unix seconds) only for token
        # expiry and for times in queries and answers. Never subtract one from the other.
        self.mono_clock = mono_clock
        self.wall_clock = wall_clock
        self.host, self._port = parse_listen(cfg.listen)
        if cfg.auth == "none" and not _is_loopback(self.host):
            raise GatewayStartError(
                f"auth mode 'none' only on a loopback address, but listen is {cfg.listen!r}: "
                "set OPSDASH_AUTH=token (with OPSDASH_TOKENS) or oidc, or listen on 127.0.0.1")
        self.id = cfg.id or f"{socket.gethostname()}-{os.getpid()}"
        jwks = None
        if cfg.auth == "oidc":
            url = cfg.oidc_jwks_url or cfg.oidc_issuer.rstrip("/") + "/protocol/openid-connect/certs"
            jwks = JwksCache(url, min_refresh_s=cfg.jwks_min_refresh_s, max_age_s=cfg.jwks_max_age_s,
                             clock=mono_clock)
        try:
            self.auth = Authenticator(
                cfg.auth, tokens=cfg.tokens, display_tokens=cfg.display_tokens,
                display_sections=cfg.display_sections, issuer=cfg.oidc_issuer,
                audience=cfg.oidc_audience, role=cfg.oidc_role, algorithms=cfg.oidc_algorithms,
                leeway_s=cfg.oidc_leeway_s, jwks=jwks, wallclock=wall_clock)
        except ValueError as exc:
            raise GatewayStartError(str(exc)) from exc
        self.store = ViewStore()
        self.brokers = Brokers(mqtt.endpoints())
        self.csp = content_security_policy(cfg.oidc_issuer if cfg.auth == "oidc" else "")
        self.allowed_hosts = _allowed_hosts(cfg, self.host)
        self.static = StaticFiles(cfg.static_dir or REPO_DIST)
        self.counters = Counters()
        self.clients: dict[ServerConnection, Client] = {}
        self.groups: dict[Sections, set[Client]] = {}
        self.per_address: dict[str, int] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self.pending: dict[ServerConnection, Principal] = {}
        self.mqtt_connected = False
        self.stale = True
        self._last_meta = 0.0
        self._server: Server | None = None
        self._supervisor: asyncio.Task[None] | None = None
        #: The running background tasks by name (``mqtt``, ``housekeeping``).
        self.tasks: dict[str, asyncio.Task[None]] = {}
        #: Why the gateway stopped by itself (a background task kept dying), else None.
        self.failure: BaseException | None = None
        self._openapi: bytes | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._on_start: list[Callable[[], Awaitable[None]]] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self.routes = RouteTable()
        self._messages: dict[str, MessageHandler] = {}
        #: the bus events and feed entries an endpoint module asked for (gateway/events_api.py)
        self._bus_events: list[BusEventHandler] = []
        self._feeds: list[FeedHandler] = []
        self._housekeepers: list[Callable[[], None]] = []
        self.events: Any = None  # gateway/events_api.EventsApi, set by its install()
        self.on_message("hello", self._msg_hello)
        self.on_message("resync", self._msg_resync)
        self._builtin_routes()
        for install in INSTALLERS:
            install(self)

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        for fn in self._on_start:
            await fn()
        self._server = await serve(
            self._handler, self.host, self._port, process_request=self._process_request,
            compression="deflate" if self.cfg.compression == "deflate" else None,
            max_size=self.cfg.max_message_bytes, max_queue=4,
            ping_interval=self.cfg.ping_interval_s, ping_timeout=self.cfg.ping_timeout_s,
            process_response=self._process_response,
            server_header="opsdash-gateway", create_connection=BodyConnection,
            logger=logging.getLogger("opsdash.gateway.ws"))
        self._supervisor = asyncio.create_task(self._supervise_all(), name="gateway-supervisor")
        log.info("gateway %s listening on %s (auth %s)", self.id, self.url, self.cfg.auth)

    # -- background tasks under supervision ----------------------------------------------------------
    async def _supervise_all(self) -> None:
        """The background loops in one TaskGroup, each restarted when it dies (see _supervised).

        A loop that keeps dying (``_RESTART_LIMIT`` times within ``_RESTART_WINDOW_S``) ends the group;
        the gateway then closes its server, ``wait_closed`` returns and ``run_gateway`` raises, so
        the process exits non-zero instead of serving a view that silently stopped moving.
        """
        try:
            async with asyncio.TaskGroup() as tg:
                if self.auth.jwks is not None:
                    tg.create_task(self._first_jwks(), name="gateway-jwks")
                tg.create_task(self._supervised("mqtt", "_mqtt_loop"))
                tg.create_task(self._supervised("housekeeping", "_housekeeping"))
        except Exception as exc:
            while isinstance(exc, ExceptionGroup) and exc.exceptions:  # the TaskGroup's wrapper
                exc = exc.exceptions[0]
            self.failure = exc
            log.critical("gateway %s stops: %s", self.id, exc)
            if self._server is not None:
                self._server.close()

    async def _supervised(self, name: str, method: str) -> None:
        """Run the loop ``self.<method>()`` as task ``gateway-<name>``; when it ends (exception,
        cancel, return) while the gateway runs, log it, count it and start it again after a pause."""
        deaths: list[float] = []
        while True:
            loop: Callable[[], Coroutine[Any, Any, None]] = getattr(self, method)
            task = asyncio.create_task(loop(), name=f"gateway-{name}")
            self.tasks[name] = task
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:  # the gateway stops
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise
            if task.cancelled():
                why: BaseException | str = "was cancelled"
            elif task.exception() is not None:
                why = task.exception() or "?"
            else:
                why = "returned"
            self.counters.task_restarts[name] = self.counters.task_restarts.get(name, 0) + 1
            now = self.mono_clock()
            deaths = [t for t in deaths if now - t < _RESTART_WINDOW_S] + [now]
            if len(deaths) >= _RESTART_LIMIT:
                raise RuntimeError(f"task gateway-{name} died {len(deaths)} times within "
                                   f"{_RESTART_WINDOW_S:g} s (last: {why!r})")
            exc_info = why if isinstance(why, BaseException) else None
            log.error("task gateway-%s %s; restarting it", name,
                      "died" if exc_info is not None else why, exc_info=exc_info)
            await asyncio.sleep(_RESTART_PAUSE_S)

    async def _first_jwks(self) -> None:
        try:
            if self.auth.jwks is not None and not await self.auth.jwks.refresh():
                log.warning("no JWKS yet: OIDC tokens are refused until %s answers", self.auth.jwks.url)
        except Exception:  # a one-off fetch: a bug here must not stop the gateway's TaskGroup
            log.exception("first JWKS fetch failed")

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            _, pending = await asyncio.wait({self._supervisor}, timeout=5)
            if pending:
                log.warning("background tasks did not stop within 5 s")
            self._supervisor = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for fn in reversed(self._on_stop):
            try:
                await fn()
            except Exception:
                log.exception("stopping %s failed", getattr(fn, "__qualname__", fn))

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_closed(self) -> None:
        """Until the server closes: after stop(), or when a background task kept dying
        (``failure`` then says why)."""
        assert self._server is not None
        await self._server.wait_closed()

    # -- MQTT ----------------------------------------------------------------------------------------
    async def _mqtt_loop(self) -> None:
        backoff = Backoff(self.cfg.backoff_initial_s, self.cfg.backoff_max_s)

        def lost(exc: Exception) -> None:
            self.mqtt_connected = False
            self._check_stale(self.mono_clock())

        try:
            # several brokers (the nodes of a cluster): each failure moves to the next (docs/scale.md)
            await reconnect_forever(lambda: self._mqtt_session(backoff), backoff, what="gateway",
                                    logger=log, on_lost=lost, brokers=self.brokers)
        finally:
            self.mqtt_connected = False

    async def _mqtt_session(self, backoff: Backoff) -> None:
        ep = self.brokers.current
        root = self.mqtt.topic_root
        async with aiomqtt.Client(
                ep.host, ep.port, username=ep.username, password=ep.password,
                identifier=f"opsdash-gateway-{self.id}-{random.randrange(1 << 30):x}",
                keepalive=self.mqtt.keepalive_s, max_queued_incoming_messages=1000,
                tls_context=ssl.create_default_context() if ep.tls else None) as client:
            await client.subscribe(f"{root}/v1/view/#", qos=1)
            if self._bus_events:  # the live tail (gateway/events_api.py)
                await client.subscribe(f"{root}/v1/svc/+/+/events", qos=0)
            self.mqtt_connected = True
            self.counters.mqtt_connects_total += 1
            backoff.reset()
            log.info("subscribed to %s/v1/view/# on %s:%s", root, ep.host, ep.port)
            snap_topic, patch_topic = topics.snapshot(root), topics.patch(root)
            async for message in client.messages:
                try:
                    self.feed(str(message.topic), bytes(message.payload), snap_topic, patch_topic)
                except Exception:  # a bug in one message must not stop the view
                    self.counters.feed_errors_total += 1
                    log.exception("feeding a message from %s failed", message.topic)

    def feed(self, topic: str, payload: bytes, snap_topic: str, patch_topic: str) -> None:
        """One message from the broker into the store, then out to the clients."""
        now = self.mono_clock()
        try:
            if topic == snap_topic:
                outcome = self.store.apply_snapshot(decode_snapshot(payload), now)
            elif topic == patch_topic:
                patch = decode_patch(payload)
                outcome = self.store.apply_patch(patch, now)
                if patch.errors:
                    for on_feed in self._feeds:
                        on_feed(patch.errors)
            else:
                if topic.endswith("/events") and self._bus_events:
                    parts = topic.rsplit("/", 3)  # .../svc/<service>/<instance>/events
                    if len(parts) == 4:
                        for on_event in self._bus_events:
                            on_event(parts[1], parts[2], payload)
                return
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.counters.bad_messages_total += 1
            log.warning("undecodable view message on %s: %s", topic, exc)
            return
        if outcome is Outcome.PATCH:
            self._fan_out_patch(now)
        elif outcome is Outcome.SNAPSHOT:
            self._fan_out_snapshot(now)
        self._check_stale(now)

    # -- fan-out -------------------------------------------------------------------------------------
    def _buffered(self, c: Client) -> int:
        transport = c.conn.transport
        if transport is None or transport.is_closing():
            return -1
        return int(transport.get_write_buffer_size())

    def _over_limit(self, c: Client, now: float) -> bool:
        """True when ``c`` must be skipped this tick (lagging, or closed); drops it past the bound."""
        size = self._buffered(c)
        if size < 0:
            return True
        limit = self.cfg.send_buffer_limit_bytes
        if c.lagging_since is not None:
            if size <= limit // 2:
                return False
        elif size <= limit:
            return False
        if c.lagging_since is None:
            c.lagging_since = now
            c.seq = None  # it misses this patch: it will need a snapshot
        self.counters.skipped_total += 1
        if now - c.lagging_since > self.cfg.lag_drop_after_s:
            self._drop(c, "slow client: stayed over the send buffer limit")
        return True

    def _drop(self, c: Client, why: str) -> None:
        self.counters.dropped_slow_total += 1
        log.info("dropping %s: %s", c.address, why)
        self._unregister(c)
        if c.conn.transport is not None:
            c.conn.transport.abort()  # a close frame would queue behind what it cannot read

    def _send(self, c: Client, data: bytes) -> None:
        broadcast([c.conn], data, text=True)
        self.counters.bytes_sent_total += len(data)

    def _send_snapshot(self, c: Client) -> None:
        if self.store.state is None or c.replay is not None:
            return
        self._send(c, self.store.snapshot_message(c.sections))
        self.counters.snapshots_sent_total += 1
        c.seq = self.store.seq
        if c.lagging_since is not None:
            self.counters.resyncs_total += 1
            c.lagging_since = None

    def _fan_out_patch(self, now: float) -> None:
        patch = self.store.last_patch
        assert patch is not None
        for sections, members in list(self.groups.items()):
            ready = []
            for c in list(members):
                if c.replay is not None or self._over_limit(c, now):
                    continue
                if c.max_rate is not None and self._coalesce(c, sections, now):
                    continue
                if c.seq == patch.base:
                    ready.append(c.conn)
                    c.seq = patch.seq
                else:
                    self._send_snapshot(c)
            if ready:
                data = self.store.patch_message(sections)
                broadcast(ready, data, text=True)
                self.counters.patches_sent_total += len(ready)
                self.counters.bytes_sent_total += len(data) * len(ready)

    def _coalesce(self, c: Client, sections: Sections, now: float) -> bool:
        """A client with ``max_rate``: True when it is done with this patch (not due yet, or sent a
        composed patch); False when it takes the ordinary patch or snapshot now."""
        assert c.max_rate is not None
        if now - c.sent_at < 1.0 / c.max_rate:
            self.counters.coalesced_total += 1
            return True  # it keeps its seq: the next patch it gets covers this one
        c.sent_at = now
        patch = self.store.last_patch
        if c.seq is None or patch is None or c.seq == patch.base:
            return False
        data = self.store.coalesced_message(sections, c.seq)
        if data is None:
            return False  # fell out of the store's log: a snapshot
        self._send(c, data)
        self.counters.patches_sent_total += 1
        c.seq = self.store.seq
        return True

    def _fan_out_snapshot(self, now: float) -> None:
        for members in list(self.groups.values()):
            for c in list(members):
                if not self._over_limit(c, now):
                    self._send_snapshot(c)

    # -- meta and housekeeping ----------------------------------------------------------------------
    def view_age(self) -> float | None:
        """Seconds since the view last moved (monotonic clock); None before the first view."""
        return self.store.age(self.mono_clock())

    def _is_stale(self, now: float) -> bool:
        age = self.store.age(now)
        return not self.mqtt_connected or age is None or age > self.cfg.stale_after_s

    def meta_message(self, now: float) -> bytes:
        age = self.store.age(now)
        return _encoder.encode({"type": "meta", "stale": self._is_stale(now),
                                "age_s": None if age is None else round(age, 3), "gateway": self.id})

    def _check_stale(self, now: float) -> None:
        stale = self._is_stale(now)
        due = stale and now - self._last_meta >= self.cfg.meta_every_s
        if stale != self.stale or due:
            if stale != self.stale:
                log.log(logging.WARNING if stale else logging.INFO, "view is %s (age %s s)",
                        "stale" if stale else "fresh again", self.store.age(now))
            self.stale = stale
            self._last_meta = now
            live = [c.conn for c in self.clients.values() if c.live]
            if live:
                broadcast(live, self.meta_message(now), text=True)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                self._housekeeping_once()
            except Exception:  # never let one bad client stop staleness and expiry checks
                log.exception("housekeeping failed")

    def _housekeeping_once(self) -> None:
        if True:
            now = self.mono_clock()
            self._check_stale(now)
            wall = self.wall_clock()
            for c in list(self.clients.values()):
                p = c.principal
                if p is not None and p.expires_at is not None and wall >= p.expires_at:
                    self._unregister(c)
                    task = asyncio.create_task(self._refuse(
                        c, CLOSE_UNAUTHORIZED, "token_expired",
                        "token expired: send a hello with a fresh token or reconnect"))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)
                elif c.lagging_since is not None:
                    size = self._buffered(c)
                    if size < 0:
                        continue
                    if now - c.lagging_since > self.cfg.lag_drop_after_s:
                        self._drop(c, "slow client: stayed over the send buffer limit")
                    elif size <= self.cfg.send_buffer_limit_bytes // 2:
                        self._send_snapshot(c)
            for fn in self._housekeepers:
                fn()
            if len(self.buckets) > 10000:
                self.buckets = {a: b for a, b in self.buckets.items() if b.tokens < b.burst - 1}

    # -- WebSocket clients ---------------------------------------------------------------------------
    def _register(self, c: Client, sections: Sections) -> None:
        if c.live:
            self.groups[c.sections].discard(c)
            if not self.groups[c.sections]:
                del self.groups[c.sections]
        c.sections = sections
        c.live = True
        self.groups.setdefault(sections, set()).add(c)
        c.seq = None
        c.lagging_since = None
        self._send(c, self.meta_message(self.mono_clock()))
        self._send_snapshot(c)

    def _unregister(self, c: Client) -> None:
        if c.live:
            group = self.groups.get(c.sections)
            if group is not None:
                group.discard(c)
                if not group:
                    del self.groups[c.sections]
            c.live = False
        if self.clients.pop(c.conn, None) is not None:
            n = self.per_address.get(c.address, 1) - 1
            if n > 0:
                self.per_address[c.address] = n
            else:
                self.per_address.pop(c.address, None)

    async def _refuse(self, c: Client, code: int, word: str, message: str) -> None:
        """Error frame, then a close with ``code``; the client is gone from the fan-out at once."""
        self._unregister(c)
        with contextlib.suppress(Exception):
            self._send(c, _encoder.encode({"type": "error", "code": word, "message": message}))
        # Close frame, then close the socket once it is flushed. Waiting for the client's close frame
        # (conn.close()) could wait until close_timeout when its unread messages paused reading.
        conn = c.conn
        with contextlib.suppress(Exception):
            if conn.protocol.state is State.OPEN:
                # a close reason is at most 123 bytes of UTF-8: cut by bytes, or send_close raises and
                # the client sees 1000 instead of the code (found by tests/hostile/test_fuzz.py)
                conn.protocol.send_close(code, message.encode("utf-8", "replace")[:120]
                                         .decode("utf-8", "ignore"))
                conn.send_data()
            if conn.transport is not None:
                conn.transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.wait_closed(), 2)

    def _allowed_sections(self, principal: Principal, wanted: Sections) -> Sections:
        allowed = principal.sections
        if allowed is None:
            return wanted
        if wanted is None:
            return allowed
        extra = not_allowed(wanted, allowed)  # services/<name> comes with services
        if extra:
            raise AuthError(403, "forbidden",
                            f"sections {sorted(extra)} are not allowed for a {principal.role} token")
        return wanted

    async def _handler(self, conn: ServerConnection) -> None:
        address = str(conn.remote_address[0]) if conn.remote_address else "?"
        c = Client(conn, address, TokenBucket(self.cfg.client_msg_rate, self.cfg.client_msg_burst,
                                              self.mono_clock()))
        c.principal = self.pending.pop(conn, None)
        self.clients[conn] = c
        self.per_address[address] = self.per_address.get(address, 0) + 1
        self.counters.connections_total += 1
        try:
            if self.per_address[address] > self.cfg.max_connections_per_address:
                self.counters.refuse("connections_per_address")
                await self._refuse(c, CLOSE_RATE_LIMITED, "too_many_connections",
                                   f"more than {self.cfg.max_connections_per_address} connections "
                                   f"from {address}")
                return
            try:
                query = parse_query(urlsplit(conn.request.path).query if conn.request else "",
                                    LiveParams, self.wall_clock())
                wanted = parse_sections(query.sections)
            except (QueryError, ProtocolError) as exc:
                self.counters.refuse("bad_message")
                await self._refuse(c, CLOSE_POLICY, "bad_request", str(exc))
                return
            if c.principal is None and not self.auth.required:
                c.principal = await self.auth.verify(None)
            if c.principal is not None:
                try:
                    self._register(c, self._allowed_sections(c.principal, wanted))
                except AuthError as exc:
                    await self._refuse(c, CLOSE_FORBIDDEN, exc.code, exc.message)
                    return
            else:
                try:
                    raw = await asyncio.wait_for(conn.recv(), self.cfg.auth_timeout_s)
                except TimeoutError:
                    self.counters.refuse("auth_timeout")
                    await self._refuse(c, CLOSE_AUTH_TIMEOUT, "auth_timeout",
                                       f"no hello with a token within {self.cfg.auth_timeout_s:g} s")
                    return
                if not await self._on_message(c, raw, first=True):
                    return
            async for raw in conn:
                if not await self._on_message(c, raw, first=False):
                    return
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                self.counters.refuse("message_too_big")  # websockets closed it with 1009
        finally:
            self._unregister(c)
            self.pending.pop(conn, None)

    def on_message(self, kind: str, handler: MessageHandler) -> None:
        """Handle client messages of ``type`` ``kind`` (one handler per type; docs/websocket.md).

        ``handler(client, message)`` runs after the rate limit and JSON decoding; it raises
        ProtocolError for bad input (the client gets ``error`` + the close code, counted), AuthError
        for a refused credential. Any other exception is a bug: logged, the client gets 1011.
        """
        if kind in self._messages:
            raise ValueError(f"client message type {kind!r} already has a handler")
        self._messages[kind] = handler

    async def _msg_hello(self, c: Client, msg: dict[str, Any]) -> None:
        sections = parse_sections(msg.get("sections"))
        rate = msg.get("max_rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                                 or not 0 < rate <= MAX_RATE):
            raise ProtocolError(f"max_rate must be patches per second in (0, {MAX_RATE}], got {rate!r:.40}")
        c.max_rate = None if rate is None else float(rate)
        token = msg.get("token")
        if token is not None and not isinstance(token, str):
            raise ProtocolError("token must be a string")
        principal = c.principal
        if token is not None or principal is None:
            principal = await self.auth.verify(token)
        c.principal = principal
        self._register(c, self._allowed_sections(principal, sections))

    async def _msg_resync(self, c: Client, msg: dict[str, Any]) -> None:
        if not c.live:
            raise ProtocolError("resync before hello", "unauthorized", CLOSE_UNAUTHORIZED)
        self._send_snapshot(c)

    async def _on_message(self, c: Client, raw: str | bytes, first: bool) -> bool:
        """Handle one client message; False when the client was refused (and closed)."""
        if not c.bucket.take(self.mono_clock()):
            self.counters.refuse("message_rate")
            await self._refuse(c, CLOSE_RATE_LIMITED, "rate_limited",
                               f"more than {self.cfg.client_msg_rate:g} messages/s")
            return False
        try:
            if isinstance(raw, bytes):
                raise ProtocolError("binary frames are not part of the protocol")
            msg: Any = decode_json(raw)
            if not isinstance(msg, dict):
                raise ProtocolError("a message is a JSON object")
            kind = msg.get("type")
            if first and kind != "hello":
                raise ProtocolError("the first message must be a hello with a token", "unauthorized",
                                    CLOSE_UNAUTHORIZED)
            handler = self._messages.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise ProtocolError(f"unknown message type {kind!r:.40}")
            await handler(c, msg)
        except AuthError as exc:
            self.counters.auth_failures_total += 1
            code = CLOSE_FORBIDDEN if exc.status == 403 else CLOSE_UNAUTHORIZED
            await self._refuse(c, code, exc.code, exc.message)
            return False
        except ProtocolError as exc:
            if exc.close == CLOSE_POLICY:
                self.counters.refuse("bad_message")
            await self._refuse(c, exc.close, exc.code, exc.message)
            return False
        return True

    # -- HTTP ----------------------------------------------------------------------------------------
    def _builtin_routes(self) -> None:
        r = self.routes
        r.get("/healthz", self._get_healthz, auth="public")
        r.get("/openapi.json", self._get_openapi, auth="public")
        r.get("/metrics", self._get_metrics)
        for name in SEED_SECTIONS:
            r.get(f"/operator/system/{name}", self._get_section, section=name)
        r.get("/operator/system/series", self._get_series, section="series", query=SeriesParams)

    def on_bus_events(self, on_event: BusEventHandler, on_feed: FeedHandler) -> None:
        """Also receive every service event of the bus and the feed entries of each view patch."""
        self._bus_events.append(on_event)
        self._feeds.append(on_feed)

    def on_housekeeping(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` with the gateway's housekeeping (every 0.25 s)."""
        self._housekeepers.append(fn)

    def client_buffer(self, c: Client) -> int:
        """Bytes queued for ``c`` (-1: closing)."""
        return self._buffered(c)

    def send_frame(self, c: Client, data: bytes) -> None:
        """Send one encoded frame to one client (counted like every frame)."""
        self._send(c, data)

    def on_start(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` when the gateway starts (before it listens): an endpoint module's resources."""
        self._on_start.append(fn)

    def on_stop(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` when the gateway stops (after it stopped listening)."""
        self._on_stop.append(fn)

    def _get_healthz(self, req: HttpRequest) -> Reply:
        return Reply(200, self.health(req.mono_now))

    def _get_openapi(self, req: HttpRequest) -> Reply:
        if self._openapi is None:
            self._openapi = served_document(OPENAPI_PATH.read_bytes())
        return Reply(200, self._openapi, cache="no-cache", etag=f"openapi-{len(self._openapi):x}-"
                     f"{zlib.crc32(self._openapi):08x}")

    def _get_metrics(self, req: HttpRequest) -> Reply:
        text = prometheus_text(self.store.state, self.gateway_figures(req.mono_now), self.prom_extra())
        return Reply(200, text.encode(), content_type="text/plain; version=0.0.4; charset=utf-8")

    def _view_headers(self, now: float) -> list[tuple[str, str]]:
        age = self.store.age(now)
        return [("X-Opsdash-Seq", str(self.store.seq)),
                ("X-Opsdash-Stale", "true" if self._is_stale(now) else "false"),
                ("X-Opsdash-Age", "" if age is None else f"{age:.3f}")]

    def _no_view(self, now: float) -> Reply:
        return Reply(503, {"error": "no_view", "message": "no view received from the aggregator yet"},
                     [("Retry-After", "2"), *self._view_headers(now)])

    def _get_section(self, req: HttpRequest) -> Reply:
        name = req.path.rsplit("/", 1)[1]
        state = self.store.state
        if state is None:
            return self._no_view(req.mono_now)
        return Reply(200, section(state, name), self._view_headers(req.mono_now),
                     etag=f"{self.store.seq}-{name}")

    def _get_series(self, req: HttpRequest) -> Reply:
        p: SeriesParams = req.params
        state = self.store.state
        if state is None:
            return self._no_view(req.mono_now)
        try:
            body = series_query(state, p.names, p.since)
        except SeriesQueryError as exc:
            return Reply(400, {"error": "bad_request", "message": str(exc), "parameter": "names"})
        # The validator names the representation: same view, same parameters.
        key = f"{','.join(p.names) if p.names else '*'}|{'' if p.since is None else repr(p.since)}"
        return Reply(200, body, self._view_headers(req.mono_now),
                     etag=f"{self.store.seq}-series-{zlib.crc32(key.encode()):08x}")

    def _check_host(self, hosts: list[str]) -> Response | None:
        """421 unless the Host header names this gateway (DNS rebinding: a page of evil.example that
        resolves to 127.0.0.1 would otherwise read the view of an auth-none gateway)."""
        if len(hosts) != 1:
            self.counters.refuse("host")
            return _error(400, "bad_request", "a request needs exactly one Host header")
        if self.allowed_hosts is None:
            return None
        name = _host_name(hosts[0])
        if name in self.allowed_hosts:
            return None
        self.counters.refuse("host")
        return _error(421, "misdirected_request", f"Host {hosts[0][:100]!r} is not a name of this "
                      "gateway (gateway.allowed_hosts)")

    def _origin_allowed(self, origin: str, host_header: str | None) -> bool:
        if self.cfg.allowed_origins:
            return origin in self.cfg.allowed_origins
        netloc = urlsplit(origin).netloc
        return bool(host_header) and netloc.lower() == (host_header or "").lower()

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        try:
            resp = await self._route(conn, request)
        except Exception:  # a bug must still answer with a status, never a traceback to the client
            log.exception("request %s %s failed", request.method, request.path[:200])
            resp = _error(500, "internal", "internal error (see the gateway log)")
        if resp is not None and request.method == "HEAD":
            resp = Response(resp.status_code, resp.reason_phrase, resp.headers, b"")
        return resp

    def _process_response(self, conn: ServerConnection, request: Request,
                           response: Response) -> Response | None:
        """websockets' own refusals of a bad handshake (400/426 text/plain from ``accept``) as JSON,
        with the security headers, like every other error of the gateway."""
        if response.status_code == 101 or not conn.protocol.accept_called:
            return None  # an upgrade, or our own answer from process_request
        text = bytes(response.body).decode("utf-8", "replace").strip()
        extra = [(k, v) for k, v in response.headers.raw_items() if k.lower() in ("upgrade",
                                                                               "sec-websocket-version")]
        return _error(response.status_code, "bad_handshake", text[:300] or response.reason_phrase, extra)

    async def _route(self, conn: ServerConnection, request: Request) -> Response | None:
        now = self.mono_clock()
        address = str(conn.remote_address[0]) if conn.remote_address else "?"
        bucket = self.buckets.get(address)
        if bucket is None:
            bucket = self.buckets[address] = TokenBucket(self.cfg.handshake_rate,
                                                         self.cfg.handshake_burst, now)
        if not bucket.take(now):
            self.counters.refuse("handshake_rate")
            return _error(429, "rate_limited", f"more than {self.cfg.handshake_rate:g} requests/s "
                          f"from {address}", [("Retry-After", "1")])
        host_refusal = self._check_host(request.headers.get_all("Host"))
        if host_refusal is not None:
            return host_refusal
        parts = urlsplit(request.path)
        path, method = parts.path, request.method
        if not path.startswith("/") or parts.scheme or parts.netloc:
            return _error(400, "bad_request", "the request target must be a path (origin-form)")
        body_error = request.body_error if isinstance(request, BodyRequest) else None
        if body_error is not None:
            return _error(body_error[0], "bad_request", body_error[1])
        if path == LIVE_PATH:
            if method in ("GET", "HEAD"):
                return await self._pre_upgrade(conn, request, address)
            if method == "OPTIONS":
                return _response(204, [("Allow", "GET, HEAD, OPTIONS")], b"")
            return _error(405, "method_not_allowed", f"{method} is not allowed on {path}",
                          [("Allow", "GET, HEAD, OPTIONS")])
        found = self.routes.resolve(method, path)
        if isinstance(found, NoMatch):
            if found.allow:
                allow = [("Allow", ", ".join(found.allow))]
                if method == "OPTIONS":
                    return _response(204, allow, b"")
                return _error(405, "method_not_allowed", f"{method} is not allowed on {path}", allow)
            if path.startswith("/operator/") or path in ("/metrics", "/healthz", "/openapi.json") \
                    or path.startswith(("/metrics/", "/healthz/", "/openapi.json/")):
                return _error(404, "not_found", f"no endpoint {path[:200]!r}")
            if method not in ("GET", "HEAD", "OPTIONS"):
                return _error(405, "method_not_allowed", f"{method} is not allowed on {path[:200]}",
                              [("Allow", "GET, HEAD, OPTIONS")])
            if method == "OPTIONS":
                return _response(204, [("Allow", "GET, HEAD, OPTIONS")], b"")
            res = self.static.get(path, request.headers.get("Accept-Encoding"),
                                  request.headers.get("If-None-Match"))
            headers = res.headers
            if any(k == "Content-Type" and v.startswith("text/html") for k, v in headers):
                headers = [*headers, ("Content-Security-Policy", self.csp)]
            return _response(res.status, headers, res.body)
        return await self._call(found, request, parts.query, now)

    async def _call(self, found: Match, request: Request, query: str, now: float) -> Response:
        route = found.route
        principal: Principal | None = None
        if route.auth != "public":
            auth = await self._authorize(request, route.section)
            if isinstance(auth, Response):
                return auth
            principal = auth
        wall = self.wall_clock()
        params = None
        try:
            if route.query is not None:
                params = parse_query(query, route.query, wall)
            elif query:
                name = query.split("&", 1)[0].partition("=")[0][:60]
                raise QueryError(name, f"{route.pattern} takes no query parameters (got {name!r})")
        except QueryError as exc:
            self.counters.refuse("bad_query")
            return _error(400, "bad_request", exc.message, parameter=exc.parameter)
        raw_body = request.body if isinstance(request, BodyRequest) else b""
        body = None
        if route.body is not None:
            ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                return _error(415, "unsupported_media_type",
                              "the body must be JSON with Content-Type: application/json")
            try:
                body = decode_json(raw_body, route.body)
            except ProtocolError as exc:
                self.counters.refuse("bad_body")
                return _error(400, "bad_request", f"body: {exc}")
        elif raw_body:
            return _error(400, "bad_request", f"{route.method} {route.pattern} takes no request body")
        req = HttpRequest(request.method, urlsplit(request.path).path, found.path_params, params, body,
                          request.headers, principal, now, wall, self)
        result = route.handler(req)
        if inspect.isawaitable(result):
            result = await result
        reply = result if isinstance(result, Reply) else Reply(result[0], result[1])
        return self._reply(reply, request)

    def _reply(self, reply: Reply, request: Request) -> Response:
        """Encode, gzip when accepted, and answer conditional requests (RFC 9110 section 13)."""
        body = reply.body
        data = b"" if body is None else body if isinstance(body, bytes) else _encoder.encode(body)
        headers = [("Content-Type", reply.content_type), ("Cache-Control", reply.cache),
                   ("Vary", "Accept-Encoding"), *reply.headers]
        gz = len(data) >= _GZIP_MIN and accepts_gzip(request.headers.get("Accept-Encoding"))
        if gz:
            data = gzip.compress(data, compresslevel=5, mtime=0)
            headers.append(("Content-Encoding", "gzip"))
        if reply.etag is not None and reply.status == 200:
            tag = f'"{reply.etag}{"-gz" if gz else ""}"'  # a distinct validator per representation
            headers.append(("ETag", tag))
            if none_match(request.headers.get("If-None-Match"), tag):
                keep = ("Cache-Control", "Vary", "ETag", "X-Opsdash-Seq", "X-Opsdash-Stale",
                        "X-Opsdash-Age")
                return _response(304, [h for h in headers if h[0] in keep], b"")
        return _response(reply.status, headers, data)

    async def _authorize(self, request: Request, section_name: str | None) -> Principal | Response:
        try:
            principal = await self.auth.verify(bearer(request.headers.get("Authorization")))
            if principal.sections is not None and (section_name is None
                                                   or section_name not in principal.sections):
                raise AuthError(403, "forbidden", f"a {principal.role} token may not read "
                                f"{section_name or 'this endpoint'}")
        except AuthError as exc:
            self.counters.auth_failures_total += 1
            extra = [("WWW-Authenticate", 'Bearer realm="opsdash"')] if exc.status == 401 else []
            return _error(exc.status, exc.code, exc.message, extra)
        return principal

    async def _pre_upgrade(self, conn: ServerConnection, request: Request,
                           address: str) -> Response | None:
        upgrade = request.headers.get("Upgrade", "")
        connection = request.headers.get("Connection", "")
        if request.method == "HEAD" or "websocket" not in upgrade.lower() \
                or "upgrade" not in connection.lower():
            return _error(426, "upgrade_required",
                          f"{LIVE_PATH} is a WebSocket: send Upgrade: websocket (docs/websocket.md)",
                          [("Upgrade", "websocket")])
        try:  # the URL's parameters are refused before the upgrade, with a 400 naming the parameter
            parse_sections(parse_query(urlsplit(request.path).query, LiveParams,
                                       self.wall_clock()).sections)
        except QueryError as exc:
            self.counters.refuse("bad_query")
            return _error(400, "bad_request", exc.message, parameter=exc.parameter)
        except ProtocolError as exc:
            self.counters.refuse("bad_query")
            return _error(400, "bad_request", exc.message, parameter="sections")
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, request.headers.get("Host")):
            self.counters.refuse("origin")
            return _error(403, "forbidden_origin", f"Origin {origin[:100]!r} is not allowed")
        if len(self.clients) >= self.cfg.max_clients:
            self.counters.refuse("max_clients")
            return _error(503, "too_many_clients", "this gateway is full; try another",
                          [("Retry-After", "5")])
        if self.per_address.get(address, 0) >= self.cfg.max_connections_per_address:
            self.counters.refuse("connections_per_address")
            return _error(429, "too_many_connections",
                          f"more than {self.cfg.max_connections_per_address} connections from {address}",
                          [("Retry-After", "5")])
        header = request.headers.get("Authorization")
        if header is not None and self.auth.required:
            try:
                principal = await self.auth.verify(bearer(header))
            except AuthError as exc:
                self.counters.auth_failures_total += 1
                extra = [("WWW-Authenticate", 'Bearer realm="opsdash"')] if exc.status == 401 else []
                return _error(exc.status, exc.code, exc.message, extra)
            self.pending[conn] = principal
        return None

    # -- figures -------------------------------------------------------------------------------------
    def gateway_figures(self, now: float) -> dict[str, Any]:
        age = self.store.age(now)
        return {"stale": self._is_stale(now), "age_s": age, "seq": self.store.seq,
                "clients": sum(1 for c in self.clients.values() if c.live)}

    def prom_extra(self) -> list[tuple[str, str, str, Any, dict[str, str] | None]]:
        k = self.counters
        rows: list[tuple[str, str, str, Any, dict[str, str] | None]] = [
            ("opsdash_gateway_patches_sent_total", "counter", "Patch frames written to clients.",
             k.patches_sent_total, None),
            ("opsdash_gateway_snapshots_sent_total", "counter", "Snapshot frames written to clients.",
             k.snapshots_sent_total, None),
            ("opsdash_gateway_sent_bytes_total", "counter", "Bytes of view frames written.",
             k.bytes_sent_total, None),
            ("opsdash_gateway_resyncs_total", "counter", "Slow clients resynced with a snapshot.",
             k.resyncs_total, None),
            ("opsdash_gateway_coalesced_total", "counter",
             "Patches held back for clients with max_rate (composed into their next one).",
             k.coalesced_total, None),
            ("opsdash_gateway_dropped_slow_total", "counter", "Slow clients dropped.",
             k.dropped_slow_total, None),
            ("opsdash_gateway_auth_failures_total", "counter", "Refused credentials.",
             k.auth_failures_total, None),
            ("opsdash_gateway_lagging_clients", "gauge", "Clients currently missing patches.",
             sum(1 for c in self.clients.values() if c.lagging_since is not None), None),
            ("opsdash_gateway_connections_total", "counter", "WebSocket connections accepted.",
             k.connections_total, None),
            ("opsdash_gateway_broker_connected", "gauge", "1 while subscribed to the broker.",
             1 if self.mqtt_connected else 0, None),
            ("opsdash_gateway_broker_connects_total", "counter",
             "Successful broker connections (the first one included).", k.mqtt_connects_total, None),
            ("opsdash_gateway_bad_view_messages_total", "counter",
             "View messages from the bus that did not decode (skipped).", k.bad_messages_total, None),
            ("opsdash_gateway_feed_errors_total", "counter",
             "View messages whose handling failed with a bug (logged).", k.feed_errors_total, None),
        ]
        for name in ("mqtt", "housekeeping"):
            rows.append(("opsdash_gateway_task_restarts_total", "counter",
                         "Background tasks that died and were restarted.",
                         k.task_restarts.get(name, 0), {"task": name}))
        for reason, n in sorted(k.refused.items()):
            rows.append(("opsdash_gateway_refused_total", "counter", "Refused connections and "
                         "requests, by reason.", n, {"reason": reason}))
        return rows

    def health(self, now: float) -> dict[str, Any]:
        """The /healthz body: ``ok`` or ``degraded`` (stale view or broker down), with the why."""
        stale = self._is_stale(now)
        age = self.store.age(now)
        reasons = []
        if not self.mqtt_connected:
            reasons.append("not connected to the broker")
        if self.store.state is None:
            reasons.append("no view received yet")
        elif age is not None and age > self.cfg.stale_after_s:
            reasons.append(f"view is {age:.1f} s old (aggregator silent?)")
        k = self.counters
        return {
            "status": "degraded" if stale else "ok",
            "reasons": reasons,
            "gateway": self.id,
            "view": {"seq": self.store.seq, "age_s": None if age is None else round(age, 3),
                     "stale": stale, "stale_after_s": self.cfg.stale_after_s},
            "mqtt": {"connected": self.mqtt_connected, "connects": k.mqtt_connects_total,
                     "broker": str(self.brokers), "failovers": self.brokers.failovers,
                     "bad_messages": k.bad_messages_total},
            "tasks": {"restarts": dict(k.task_restarts)},
            "clients": {"connected": sum(1 for c in self.clients.values() if c.live),
                        "lagging": sum(1 for c in self.clients.values() if c.lagging_since is not None),
                        "resyncs": k.resyncs_total, "dropped_slow": k.dropped_slow_total,
                        "coalesced": k.coalesced_total,
                        "connections_total": k.connections_total,
                        "patches_sent": k.patches_sent_total, "bytes_sent": k.bytes_sent_total,
                        "buffered_bytes_max": max((self._buffered(c) for c in self.clients.values()),
                                                  default=0)},
            "refused": dict(k.refused),
            "auth": {"mode": self.cfg.auth, "failures": k.auth_failures_total,
                     "oidc_issuer": self.cfg.oidc_issuer or None,
                     "oidc_client_id": self.cfg.oidc_client_id or None, "oidc_scope": "openid"},
            # so a page asks the history endpoints only when they can answer (no 404 in its console)
            "history": {"enabled": bool(getattr(getattr(self.app_config, "history", None), "enabled",
                                                False))},
        }
