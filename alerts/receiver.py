"""A webhook receiver stand-in: accepts Alertmanager webhook POSTs, logs and keeps them.

The demo runs one (``opsdash demo`` points ``alerts.webhook_urls`` at it, so the notifications can be
seen in its log); the tests use it as the receiver whose answers they control (``status``) and that
they can stop and start again (a receiver that is down).

    async with WebhookReceiver() as hook:      # listens on 127.0.0.1, a free port
        hook.url                               # http://127.0.0.1:PORT/hook
        await hook.wait_for(lambda got: len(got) >= 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Received", "WebhookReceiver"]

log = logging.getLogger("opsdash.webhook")

MAX_BODY = 4 * 2**20


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    body: Any
    at: float


@dataclass
class WebhookReceiver:
    host: str = "127.0.0.1"
    port: int = 0
    #: HTTP status to answer (tests set 400 or 503)
    status: int = 200
    quiet: bool = False
    received: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _changed: asyncio.Condition | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def start(self) -> WebhookReceiver:
        self._changed = asyncio.Condition()
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> WebhookReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, cond: Callable[[list[Received]], bool], timeout: float = 10.0) -> None:
        assert self._changed is not None
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: cond(self.received))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                length = 0
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = h.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = min(int(value.strip()), MAX_BODY)
                raw = await reader.readexactly(length) if length else b""
                status = self.status
                if method == "POST" and status < 300:
                    try:
                        body: Any = json.loads(raw) if raw else None
                    except ValueError:
                        body = raw.decode("utf-8", "replace")
                    self.received.append(Received(path, body, time.time()))
                    self._log(body)
                    assert self._changed is not None
                    async with self._changed:
                        self._changed.notify_all()
                reply = b'{"ok": true}' if status < 300 else b'{"error": "refused by the test"}'
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(reply)}\r\n\r\n".encode() + reply)
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _log(self, body: Any) -> None:
        if self.quiet:
            return
        if isinstance(body, dict) and isinstance(body.get("alerts"), list):
            for a in body["alerts"]:
                log.info("webhook stand-in got %s: %s %s", a.get("status"),
                         (a.get("labels") or {}).get("alertname"),
                         (a.get("annotations") or {}).get("summary", ""))
        else:
            log.info("webhook stand-in got %s", str(body)[:200])


async def serve_forever(host: str = "127.0.0.1", port: int = 9099) -> None:
    """Run a receiver until cancelled (the demo)."""
    async with WebhookReceiver(host, port) as hook:
        log.info("webhook stand-in listening on %s", hook.url)
        await asyncio.Event().wait()
