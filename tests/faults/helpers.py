"""Shared helpers of the fault and hostile-input tests: a lossy MQTT proxy, strict JSON, counting load.

``MqttProxy`` sits on loopback between one MQTT client and mosquitto and really changes what crosses the
wire (MQTT 3.1.1 framing): it parses every packet the client sends and, for PUBLISH packets whose topic
ends in ``/metrics``, either drops a share of them or sends each one twice.

- drop: the PUBLISH never reaches the broker; the proxy answers the client with the PUBACK the broker
  would have sent, so the client believes it was delivered (as a broker that lost it after acking would).
  Without the fake PUBACK the client would time out and re-send with the same seq: a retransmission,
  not a loss.
- dup: the PUBLISH is forwarded, then a copy with a new packet id (from a range the client never uses
  in a test, 50000+) is sent as a second publish; the broker's PUBACK for the copy is swallowed on the way
  back, so the client sees exactly the acks it expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from typing import Any

from telemetry_bus.reporter import Reporter

PUBLISH = 3
PUBACK = 4


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite JSON constant {name}")


def strict_loads(data: bytes | str) -> Any:
    """``json.loads`` that refuses NaN/Infinity (what a browser's JSON.parse accepts)."""
    return json.loads(data, parse_constant=_reject_constant)


def assert_finite(value: Any, path: str = "$") -> None:
    """Every number in a decoded JSON value is finite (msgspec would write NaN as null: catch it before)."""
    if isinstance(value, float):
        assert math.isfinite(value), f"non-finite number at {path}"
    elif isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), f"non-string key at {path}"
            assert_finite(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            assert_finite(v, f"{path}[{i}]")


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    """One whole MQTT control packet (fixed header, remaining length, body)."""
    first = await reader.readexactly(1)
    length, mult, header = 0, 1, bytearray(first)
    while True:
        b = (await reader.readexactly(1))[0]
        header.append(b)
        length += (b & 0x7F) * mult
        if not b & 0x80:
            break
        mult *= 128
    return bytes(header) + await reader.readexactly(length)


def _body_start(packet: bytes) -> int:
    i = 1
    while packet[i] & 0x80:
        i += 1
    return i + 1


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def parse_publish(packet: bytes) -> tuple[str, int, int | None, int]:
    """(topic, qos, packet id, offset of the packet id) of a PUBLISH packet."""
    qos = (packet[0] >> 1) & 3
    i = _body_start(packet)
    tlen = int.from_bytes(packet[i:i + 2], "big")
    topic = packet[i + 2:i + 2 + tlen].decode("utf-8", "replace")
    pid_at = i + 2 + tlen
    pid = int.from_bytes(packet[pid_at:pid_at + 2], "big") if qos else None
    return topic, qos, pid, pid_at


class MqttProxy:
    """A loopback TCP proxy to mosquitto that drops or duplicates metrics PUBLISH packets (see above)."""

    def __init__(self, broker_host: str, broker_port: int, *, drop_ratio: float = 0.0,
                 duplicate: bool = False, seed: int = 7) -> None:
        self.broker = (broker_host, broker_port)
        self.drop_ratio = drop_ratio
        self.duplicate = duplicate
        self.active = True  # switch faults off (e.g. for the final message) without a reconnect
        self.rng = random.Random(seed)
        self.forwarded = 0
        self.dropped = 0
        self.duplicated = 0
        self._next_pid = 50000
        self._own_pids: set[int] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> MqttProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            b_reader, b_writer = await asyncio.open_connection(*self.broker)
        except OSError:
            c_writer.close()
            self._tasks.discard(task)
            return
        up = asyncio.create_task(self._client_to_broker(c_reader, b_writer, c_writer))
        down = asyncio.create_task(self._broker_to_client(b_reader, c_writer))
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass  # stop(): asyncio's start_server callback would log a cancelled handler as an error
        finally:
            for t in (up, down):
                t.cancel()
            for w in (b_writer, c_writer):
                w.close()
            self._tasks.discard(task)

    async def _client_to_broker(self, reader: asyncio.StreamReader, broker: asyncio.StreamWriter,
                                client: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                packet = await _read_packet(reader)
                if packet[0] >> 4 == PUBLISH:
                    topic, qos, pid, pid_at = parse_publish(packet)
                    if topic.endswith("/metrics") and self.active:
                        if self.drop_ratio and self.rng.random() < self.drop_ratio:
                            self.dropped += 1
                            if qos == 1 and pid is not None:
                                client.write(bytes([PUBACK << 4, 2]) + pid.to_bytes(2, "big"))
                            continue
                        if self.duplicate:
                            broker.write(packet)
                            self.forwarded += 1
                            copy = bytearray(packet)
                            if pid is not None:
                                own = self._next_pid
                                self._next_pid = 50000 + (self._next_pid - 49999) % 15000
                                self._own_pids.add(own)
                                copy[pid_at:pid_at + 2] = own.to_bytes(2, "big")
                            broker.write(bytes(copy))
                            self.duplicated += 1
                            await broker.drain()
                            continue
                    self.forwarded += topic.endswith("/metrics")
                broker.write(packet)
                await broker.drain()

    async def _broker_to_client(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                packet = await _read_packet(reader)
                if packet[0] >> 4 == PUBACK:
                    pid = int.from_bytes(packet[_body_start(packet):_body_start(packet) + 2], "big")
                    if pid in self._own_pids:
                        self._own_pids.discard(pid)
                        continue
                client.write(packet)
                await client.drain()


async def count_load(reps: list[Reporter], seconds: float, per_tick: int = 5, tick: float = 0.05,
                     sent: dict[str, int] | None = None, hist: bool = True,
                     log: list[tuple[float, int]] | None = None) -> dict[str, int]:
    """Count ``per_tick`` messages_received per reporter every ``tick`` s for ``seconds``; what was counted.

    A loaded machine wakes late, so fewer ticks than ``seconds / tick`` may happen: ``log`` (if given)
    gets ``(time.time(), count)`` for every tick, the ground truth of when what was counted.
    """
    sent = sent if sent is not None else {}
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        for r in reps:
            r.inc("messages_received", per_tick)
            if hist:
                r.observe("influx_write_ms", 1.0 + (sent.get(r.instance, 0) % 50))
            sent[r.instance] = sent.get(r.instance, 0) + per_tick
        if log is not None:
            log.append((time.time(), per_tick * len(reps)))
        await asyncio.sleep(tick)
    return sent


def instance_totals(fold: Any, service: str, counter: str = "messages_received") -> dict[str, int]:
    svc = fold.services.get(service)
    if svc is None:
        return {}
    return {n: i.totals.get(counter, 0) for n, i in svc.instances.items()}
