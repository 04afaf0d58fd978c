"""``opsdash watch URL [--token T]``: the live view in a terminal (a wall screen without a browser).

:class:`WatchModel` is the pure client side of the protocol (docs/websocket.md): it applies
snapshots and patches and says when to resync. :func:`render` draws it with rich. :func:`run_watch`
connects, keeps reconnecting while the gateway is away, and exits with a clear message (status 2)
when the gateway refuses the token, the Origin or the rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from gateway.errors import ProtocolError, decode_json
from telemetry_bus.view_diff import apply_view_patch

__all__ = ["WatchModel", "live_url", "render", "run_watch"]

SECTIONS: Final = ("health", "metrics", "capacity", "aggregates", "errors")
_COLORS: Final = {"healthy": "green", "degraded": "yellow", "down": "red", "unknown": "bright_black"}
_DOTS: Final = {"healthy": "●", "degraded": "●", "down": "●", "unknown": "○"}
_CLOSE_TEXT: Final = {
    4401: "unauthorized (missing, invalid or expired token)",
    4403: "forbidden (this token may not read that)",
    4408: "authentication timeout",
    4429: "rate limited",
    1008: "policy violation",
    1009: "message too big",
}


def live_url(url: str) -> str:
    """``http://host:port`` (or ws://, or with the path) -> ``ws://host:port/operator/system/live``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"URL must be http(s):// or ws(s):// with a host, got {url!r}")
    path = parts.path if parts.path.endswith("/live") else "/operator/system/live"
    return urlunsplit((scheme, parts.netloc, path, "sections=" + ",".join(SECTIONS), ""))


class WatchModel:
    """The client's copy of the view. ``feed(msg)`` returns a reply to send (a resync) or None."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.seq: int | None = None
        self.meta: dict[str, Any] = {}
        self.error: dict[str, Any] | None = None
        self.resyncs = 0

    def feed(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        match msg.get("type"):
            case "snapshot":
                self.state = msg.get("state") or {}
                self.seq = msg.get("seq")
            case "patch":
                if self.state is None or msg.get("base") != self.seq:
                    self.resyncs += 1
                    self.seq = None
                    return {"type": "resync"}
                self.state = apply_view_patch(self.state, msg.get("patch"), msg.get("append"),
                                              msg.get("errors"))
                self.seq = msg.get("seq")
            case "meta":
                self.meta = msg
            case "error":
                self.error = msg
        return None


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    return f"{value:,.{digits}f}{unit}" if isinstance(value, float) else f"{value:,}{unit}"


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def render(model: WatchModel, url: str = "") -> Group:
    """The view as rich renderables: status line, health grid, throughput, capacity, totals, errors."""
    state = model.state or {}
    meta = model.meta
    health = _d(state.get("health"))
    status = str(health.get("status") or "unknown")
    head = Text.assemble(("SYSTEM STATUS ", "bold"), (status.upper(), _COLORS.get(status, "white")),
                         f"   seq {model.seq if model.seq is not None else '—'}   ")
    if meta.get("stale"):
        age = meta.get("age_s")
        head.append(f"STALE (view {_fmt(age, ' s')} old)" if age is not None else "STALE (no view yet)",
                    "bold red")
    else:
        head.append(f"live · {meta.get('gateway', '')} · {url}", "bright_black")
    grid = Table.grid(padding=(0, 2))
    comps = sorted(_d(health.get("components")).items())
    row: list[Text] = []
    for name, comp in comps:
        cs = str(_d(comp).get("status") or "unknown")
        row.append(Text.assemble((_DOTS.get(cs, "?") + " ", _COLORS.get(cs, "white")), name))
        if len(row) == 4:
            grid.add_row(*row)
            row = []
    if row:
        grid.add_row(*row)
    m = _d(state.get("metrics"))
    tp, lat = _d(m.get("throughput")), _d(m.get("latency"))
    numbers = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for col in ("ingest/s", "alerts/s", "deliveries/s", "write p50", "p95", "p99"):
        numbers.add_column(col, justify="right")
    numbers.add_row(_fmt(tp.get("ingest_rate_per_sec")), _fmt(tp.get("alert_rate_per_sec")),
                    _fmt(tp.get("delivery_rate_per_sec")), _fmt(lat.get("influx_write_p50_ms"), " ms"),
                    _fmt(lat.get("influx_write_p95_ms"), " ms"), _fmt(lat.get("influx_write_p99_ms"), " ms"))
    cap, agg = _d(state.get("capacity")), _d(state.get("aggregates"))
    disk, pg, influx = _d(cap.get("disk")), _d(cap.get("postgres")), _d(cap.get("influxdb"))
    totals = Text(
        f"Disk {_fmt(disk.get('used_pct'), '%')}   PG conn {_fmt(pg.get('connections_used'))}/"
        f"{_fmt(pg.get('connections_max'))}   Influx files {_fmt(influx.get('file_count'))}/"
        f"{_fmt(influx.get('file_limit'))}\n"
        f"Tenants {_fmt(_d(agg.get('tenants')).get('total'))}   Devices "
        f"{_fmt(_d(agg.get('devices')).get('registered'))} ({_fmt(_d(agg.get('devices')).get('online'))}"
        f" online)   Alerts open {_fmt(_d(agg.get('alerts')).get('open'))}   Integrations "
        f"{_fmt(_d(agg.get('integrations')).get('active'))} active")
    errors = Table(show_header=False, box=None, padding=(0, 1))
    for raw_e in (_d(state.get("errors")).get("errors") or [])[:8]:
        e = _d(raw_e)
        errors.add_row(str(e.get("timestamp") or ""), str(e.get("service") or ""),
                       str(e.get("type") or ""), str(e.get("message") or "")[:80], style="yellow")
    return Group(head, grid, Text(""), numbers, Text(""), totals, Text("RECENT ERRORS", "bold"), errors)


def _refusal(exc: Exception) -> str | None:
    if isinstance(exc, InvalidStatus):
        body = exc.response.body.decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            body = json.loads(body).get("message", body)
        return f"refused by the gateway: HTTP {exc.response.status_code}: {body.strip()}"
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None and exc.rcvd.code in _CLOSE_TEXT:
        return (f"refused by the gateway: close {exc.rcvd.code} {_CLOSE_TEXT[exc.rcvd.code]}"
                + (f": {exc.rcvd.reason}" if exc.rcvd.reason else ""))
    return None


async def run_watch(url: str, token: str | None, console: Console | None = None,
                    once: bool = False) -> int:
    """Render the live view until Ctrl-C. 0 on a clean exit, 2 when refused, 1 on a bad URL."""
    console = console or Console()
    try:
        ws_url = live_url(url)
    except ValueError as exc:
        console.print(f"opsdash watch: {exc}")
        return 1
    headers = {"Authorization": f"Bearer {token}"} if token else None
    model = WatchModel()
    delay = 0.5
    with Live(render(model, url), console=console, auto_refresh=False, transient=False) as live:
        while True:
            try:
                async with connect(ws_url, additional_headers=headers, compression=None,
                                   open_timeout=10, max_size=64 << 20) as ws:
                    delay = 0.5
                    last = 0.0
                    async for raw in ws:
                        reply = model.feed(decode_json(raw))  # ProtocolError on garbage
                        if reply is not None:
                            await ws.send(json.dumps(reply))
                        now = time.monotonic()
                        if now - last > 0.2:
                            live.update(render(model, url), refresh=True)
                            last = now
                        if once and model.state is not None:
                            return 0
            except (InvalidStatus, ConnectionClosed) as exc:
                why = _refusal(exc)
                if why is not None:
                    live.stop()
                    console.print(f"opsdash watch: {why}")
                    return 2
            except ProtocolError as exc:
                live.stop()
                console.print(f"opsdash watch: {ws_url} sent a frame that is not the protocol: {exc}")
                return 1
            except (OSError, InvalidURI, TimeoutError) as exc:
                model.meta = {"stale": True, "age_s": None}
                live.update(render(model, url), refresh=True)
                console.print(f"opsdash watch: cannot reach {ws_url}: {exc}; retrying", style="red")
                if once:
                    return 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
