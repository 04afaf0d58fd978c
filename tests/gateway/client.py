"""A test client of the live protocol: applies snapshots and patches like the frontend does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from telemetry_bus.view_diff import apply_append, apply_errors, merge_patch
from tests.support.servers import scaled


async def recv(ws: ClientConnection, kind: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """The next frame (of ``kind``, skipping others)."""
    async with asyncio.timeout(scaled(timeout)):
        while True:
            msg: dict[str, Any] = json.loads(await ws.recv())
            if kind is None or msg["type"] == kind:
                return msg


async def close_code(ws: ClientConnection) -> int:
    """Read until the server closes the connection; its close code (10 s at most, scaled)."""
    with pytest.raises(ConnectionClosed) as err:
        async with asyncio.timeout(scaled(10)):
            while True:
                await ws.recv()
    assert err.value.rcvd is not None
    return int(err.value.rcvd.code)


class Mirror:
    """The client's copy of the view."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.seq: int | None = None
        self.snapshots = 0
        self.patches = 0
        self.gaps = 0

    def feed(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "snapshot":
            self.state, self.seq = msg["state"], msg["seq"]
            self.snapshots += 1
        elif msg["type"] == "patch":
            if msg["base"] != self.seq or self.state is None:
                self.gaps += 1
                return
            self.state = merge_patch(self.state, msg["patch"])
            if msg["append"]:
                apply_append(self.state.setdefault("series", {}), msg["append"],
                             self.state["meta"].get("series_len", 900))
            if msg.get("errors"):
                self.state = apply_errors(self.state, msg["errors"], self.state["meta"].get("errors_len", 50))
            self.seq = msg["seq"]
            self.patches += 1
