"""Fixtures of the probe tests: fake HTTP servers (TCP or Unix socket), a black hole, a private
PostgreSQL with pg_stat_statements loaded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from tests.support.servers import PrivatePostgres


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)

    def raw(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Handler = Callable[[Request], Response]
_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class FakeHTTP:
    """A real HTTP/1.1 server (keep-alive) answering from ``routes[(method, path)]``."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[Request] = []
        self.server: asyncio.base_events.Server | None = None
        self.url = ""

    def route(self, method: str, path: str, handler: Handler | Response) -> None:
        self.routes[(method, path)] = handler if callable(handler) else (lambda _r, h=handler: h)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, v = h.decode().split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                url = urlsplit(target)
                req = Request(method, url.path, parse_qs(url.query), headers, body)
                self.requests.append(req)
                handler = self.routes.get((method, url.path))
                resp = handler(req) if handler else Response(404, {"message": f"no route {url.path}"})
                payload = resp.raw()
                head = f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'X')}\r\n"
                for k, v in resp.headers.items():
                    head += f"{k}: {v}\r\n"
                head += f"Content-Length: {len(payload)}\r\n\r\n"
                writer.write(head.encode() + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def start_tcp(self) -> FakeHTTP:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def start_unix(self, path: str) -> FakeHTTP:
        self.server = await asyncio.start_unix_server(self._handle, path)
        self.url = f"unix://{path}"
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)


@pytest.fixture
async def fake_http() -> AsyncIterator[FakeHTTP]:
    server = await FakeHTTP().start_tcp()
    yield server
    await server.close()


class BlackHole:
    """Accepts TCP connections and never answers."""

    def __init__(self) -> None:
        self.conns: list[asyncio.StreamWriter] = []
        self.port = 0

    async def _handle(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.conns.append(w)
        await asyncio.sleep(3600)


@pytest.fixture
async def black_hole() -> AsyncIterator[BlackHole]:
    hole = BlackHole()
    server = await asyncio.start_server(hole._handle, "127.0.0.1", 0)
    hole.port = server.sockets[0].getsockname()[1]
    yield hole
    for w in hole.conns:
        w.close()
    server.close()


@pytest.fixture(scope="session")
def pgss_admin_dsn() -> Iterator[str]:
    """A private PostgreSQL cluster (nobody else connects) with pg_stat_statements preloaded."""
    import subprocess

    workdir = Path(tempfile.mkdtemp(prefix="opsdash-probes-pg-"))
    server = PrivatePostgres(workdir)
    server.start()
    subprocess.run(
        ["psql", server.admin_dsn, "-qc", "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"],
        check=True,
        capture_output=True,
    )
    server.stop()
    server.start()
    try:
        yield server.admin_dsn
    finally:
        server.stop()


async def pg_exec(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for s in statements:
            await conn.execute(s)
    finally:
        await conn.close()
