"""Simulated InfluxDB 3 and Keycloak endpoints for ``opsdash demo`` (this machine has neither server).

They are part of the simulated platform, like the simulated services, and the demo says so when it
starts them. They answer exactly what the probes ask, in the shapes documented for the real servers
(/work/shared/contracts: InfluxDB 3 Core ``/health`` (``OK``), ``/ping``, ``/api/v3/query_sql`` JSON
rows; Keycloak ``/health/ready`` on the management port, the token endpoint and
``client-session-stats``), with figures that move like the simulated platform: recent writes follow the
simulated ingest rate, the Parquet file count grows and is compacted, sessions follow the day.

The probes talk to them over real HTTP; a configured real InfluxDB or Keycloak
(``OPSDASH_PROBES__INFLUXDB__URL``, ``OPSDASH_PROBES__KEYCLOAK__MANAGEMENT_URL``) replaces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opsdash.simulator import SimSettings, daily_factor

REALM = "opsdash"

#: status, content type, body, extra headers
Answer = tuple[int, str, bytes, dict[str, str]]


class StandIn:
    """A minimal HTTP/1.1 server (one request per connection) answering ``route(method, path, query)``."""

    name = "stand-in"

    def __init__(self, settings: SimSettings, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.rng = random.Random(f"{settings.seed}/{self.name}")
        self.started = time.time()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def route(self, method: str, path: str, query: dict[str, list[str]]) -> Answer:
        raise NotImplementedError

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = min(int(v.strip() or 0), 65536)
                if length:
                    await reader.readexactly(length)
                parts = urlsplit(target)
                status, ctype, body, headers = self.route(method, parts.path, parse_qs(parts.query))
                reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}.get(status, "OK")
                extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                             f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
                             + body)
                await writer.drain()
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, "application/json", json.dumps(obj).encode(), headers or {}


class InfluxStandIn(StandIn):
    """InfluxDB 3 Core as the influxdb probe sees it."""

    name = "influxdb"

    def __init__(self, settings: SimSettings, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(settings, host, port)
        self.process_id = str(uuid.UUID(int=self.rng.getrandbits(128)))

    def parquet_files(self) -> int:
        # one gen1 file per table every few minutes, compacted back when the count nears 400
        minutes = (time.time() - self.started) / 60
        return 214 + int(minutes * 3) % 180

    def route(self, method: str, path: str, query: dict[str, list[str]]) -> Answer:
        if path in ("/health", "/api/v1/health") and method == "GET":
            return 200, "text/plain; charset=utf-8", b"OK", {}
        if path == "/ping":
            return _json(200, {"product_name": "InfluxDB 3 Core (opsdash demo stand-in)",
                               "version": "3.10.1", "revision": "demo", "process_id": self.process_id},
                         {"X-Influxdb-Version": "3.10.1", "X-Influxdb-Build": "Core"})
        if path == "/api/v3/query_sql":
            q = (query.get("q") or [""])[0]
            if "parquet_files" in q:
                files = self.parquet_files()
                return _json(200, [
                    {"table_name": "telemetry", "files": files - 37, "bytes": (files - 37) * 9_400_000},
                    {"table_name": "device_events", "files": 37, "bytes": 37 * 2_100_000}])
            now = time.time()
            written = sum(daily_factor(now - s, self.settings) for s in range(0, 60, 5)) * 5
            n = int(written * self.settings.ingest_rate * 0.998)
            return _json(200, [{"n": n}])
        return _json(404, {"error": f"no route {path}"})


class KeycloakStandIn(StandIn):
    """Keycloak 26 as the keycloak probe sees it: management health, token endpoint, session stats."""

    name = "keycloak"

    def route(self, method: str, path: str, query: dict[str, list[str]]) -> Answer:
        if path == "/health/ready":
            return _json(200, {"status": "UP", "checks": [
                {"name": "Keycloak database connections async health check", "status": "UP"}]})
        if path == f"/realms/{REALM}/protocol/openid-connect/token" and method == "POST":
            return _json(200, {"access_token": "demo-token", "expires_in": 300, "token_type": "Bearer"})
        if path == f"/admin/realms/{REALM}/client-session-stats":
            load = daily_factor(time.time(), self.settings)
            return _json(200, [
                {"id": "0b7d", "clientId": "iot-console", "active": str(int(140 * load)), "offline": "3"},
                {"id": "4c1e", "clientId": "opsdash", "active": str(2 + int(3 * load)), "offline": "0"},
                {"id": "9a2f", "clientId": "mobile-app", "active": str(int(60 * load)), "offline": "41"}])
        return _json(404, {"error": "Not Found"})
