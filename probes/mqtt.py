"""MQTT broker probe: connect latency, ``$SYS`` figures and a round-trip canary.

Each check connects (latency = time to CONNACK), subscribes to ``$SYS/broker/#`` (mosquitto publishes
it retained, so the last values arrive at once) and to its own canary topic, publishes a nonce there
at QoS 1 and times the echo. A broker that is down fails the connect; a broker that accepts
connections but routes nothing fails the canary; an idle platform ("publishers silent") still passes
the canary and shows up as low message rates instead.

Figures (mosquitto 2.x, see ../shared/contracts/mosquitto-sys.md):
``clients/connected`` (includes this probe when the broker's last ``$SYS`` tick saw it),
``load/messages/{received,sent}/1min`` (messages per minute, averaged over 1 min; divided by 60),
``uptime`` ("N seconds"; the broker's own heartbeat: if it stops moving, the broker is stalled).

NATS (its MQTT listener) has no ``$SYS`` tree. With ``nats_monitor_url`` the probe reads the server's
monitoring endpoint instead (``/varz``, the documented JSON of nats-server's HTTP monitoring port):
``connections``, ``in_msgs``/``out_msgs`` (totals: rates are the difference between two checks),
``slow_consumers`` (a rise since the last check is a warning) and ``routes`` (cluster size = routes +
1; fewer than ``nats_cluster_size`` is a warning). The canary runs as on any broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import aiomqtt
import httpx

from probes.config import MqttProbeConfig
from probes.core import ProbeError, Reading
from telemetry_bus.config import MqttConfig, MqttEndpoint

__all__ = ["MqttProbe", "NatsSample", "UptimeWatch", "mqtt_reading", "nats_metrics", "parse_sys"]

SYS_FILTER: Final = "$SYS/broker/#"
_S: Final = "$SYS/broker/"
#: metric -> ($SYS topic, divisor)
_SYS_METRICS: Final[dict[str, tuple[str, float]]] = {
    "connected_clients": ("clients/connected", 1.0),
    "messages_received_per_s": ("load/messages/received/1min", 60.0),
    "messages_sent_per_s": ("load/messages/sent/1min", 60.0),
    "uptime_s": ("uptime", 1.0),
    "publish_received_per_s": ("load/publish/received/1min", 60.0),
    "publish_sent_per_s": ("load/publish/sent/1min", 60.0),
    "publish_dropped_total": ("publish/messages/dropped", 1.0),
    "subscriptions": ("subscriptions/count", 1.0),
    "retained_messages": ("retained messages/count", 1.0),
    "heap_bytes": ("heap/current", 1.0),
}
_WANTED: Final = ("clients/connected", "load/messages/received/1min", "load/messages/sent/1min", "uptime")


def _number(text: str) -> float | None:
    token = text.strip().split(" ", 1)[0]  # "1234 seconds" -> 1234
    try:
        return float(token)
    except ValueError:
        return None


def parse_sys(values: Mapping[str, str]) -> dict[str, float | int | None]:
    """``$SYS`` payloads (topic without ``$SYS/broker/`` -> text) -> metrics; missing ones are None."""
    out: dict[str, float | int | None] = {}
    for metric, (topic, div) in _SYS_METRICS.items():
        raw = values.get(topic)
        value = None if raw is None else _number(raw)
        if value is None:
            out[metric] = None
        elif div == 1.0 and value.is_integer():
            out[metric] = int(value)
        else:
            out[metric] = round(value / div, 4)
    return out


@dataclass(slots=True)
class UptimeWatch:
    """Remembers when the broker's uptime last moved, to tell a stalled broker from a live one."""

    value: float | None = None
    changed_at: float | None = None
    restarts: int = 0

    def update(self, uptime: float | None, now: float) -> float | None:
        """Feed this cycle's uptime; returns for how long it has not moved (None: moving/unknown)."""
        if uptime is None:
            return None
        if self.value is None or uptime != self.value:
            if self.value is not None and uptime < self.value:
                self.restarts += 1
            self.value, self.changed_at = uptime, now
            return None
        assert self.changed_at is not None
        return now - self.changed_at


@dataclass(frozen=True, slots=True)
class MqttRaw:
    connect_ms: float
    sys: Mapping[str, str]
    canary_rtt_ms: float
    uptime_stuck_s: float | None = None
    stuck_limit_s: float = 30.0
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: NATS: this check's and the previous check's ``/varz`` (no ``$SYS`` there)
    nats: NatsSample | None = None
    nats_prev: NatsSample | None = None
    nats_cluster_size: int = 0


@dataclass(frozen=True, slots=True)
class NatsSample:
    """The figures of one ``/varz`` answer, and when (monotonic seconds) it was read."""

    at: float
    server_name: str
    version: str
    connections: int
    in_msgs: int
    out_msgs: int
    slow_consumers: int
    routes: int

    @classmethod
    def from_varz(cls, varz: Mapping[str, Any], at: float) -> NatsSample:
        def count(key: str) -> int:
            value = varz.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ProbeError(f"NATS /varz: {key!r} is not a count ({value!r})")
            return value
        return cls(at=at, server_name=str(varz.get("server_name") or ""),
                   version=str(varz.get("version") or ""), connections=count("connections"),
                   in_msgs=count("in_msgs"), out_msgs=count("out_msgs"),
                   slow_consumers=count("slow_consumers"), routes=count("routes"))


def nats_metrics(now: NatsSample, prev: NatsSample | None) -> tuple[dict[str, float | int | None], list[str]]:
    """Pure: two ``/varz`` samples -> the probe's metrics and warnings (rates need both)."""
    dt = now.at - prev.at if prev is not None else 0.0
    # A server restart resets its totals: no rate from that pair.
    fresh = prev is not None and dt > 0 and prev.server_name == now.server_name \
        and now.in_msgs >= prev.in_msgs and now.out_msgs >= prev.out_msgs
    metrics: dict[str, float | int | None] = {
        "connected_clients": now.connections,
        "messages_received_per_s": round((now.in_msgs - prev.in_msgs) / dt, 4) if fresh and prev else None,
        "messages_sent_per_s": round((now.out_msgs - prev.out_msgs) / dt, 4) if fresh and prev else None,
        "slow_consumers": now.slow_consumers,
        "cluster_size": now.routes + 1,
    }
    warnings: list[str] = []
    if fresh and prev is not None and now.slow_consumers > prev.slow_consumers:
        warnings.append(f"NATS {now.server_name}: {now.slow_consumers - prev.slow_consumers} new slow "
                        f"consumer(s) since the last check")
    return metrics, warnings


def mqtt_reading(raw: MqttRaw) -> Reading:
    """Pure: raw answers -> metrics and warnings."""
    warnings: list[str] = []
    details: dict[str, Any] = dict(raw.extra)
    if raw.nats is not None:
        metrics, warnings = nats_metrics(raw.nats, raw.nats_prev)
        want = raw.nats_cluster_size
        if want and raw.nats.routes + 1 < want:
            warnings.append(f"NATS cluster has {raw.nats.routes + 1} of {want} nodes "
                            f"(seen from {raw.nats.server_name or 'the monitored server'})")
        details.update(broker="nats", server_name=raw.nats.server_name, version=raw.nats.version)
    else:
        metrics = parse_sys(raw.sys)
        if not raw.sys:
            warnings.append("no $SYS figures (sys_interval 0, or no read access to $SYS/#)")
        if raw.uptime_stuck_s is not None and raw.uptime_stuck_s > raw.stuck_limit_s:
            warnings.append(f"broker uptime stuck at {metrics['uptime_s']} s for {raw.uptime_stuck_s:.0f} s "
                            f"($SYS not updating: broker stalled?)")
        if "version" in raw.sys:
            details["version"] = raw.sys["version"]
    metrics["canary_rtt_ms"] = round(raw.canary_rtt_ms, 3)
    return Reading(latency_ms=raw.connect_ms, metrics=metrics, details=details, warnings=tuple(warnings))


async def read_varz(urls: list[str], timeout_s: float, at: float) -> NatsSample:
    """The first answering server's ``/varz``; a clear ProbeError when none answers."""
    errors: list[str] = []
    async with httpx.AsyncClient(timeout=timeout_s) as http:
        for url in urls:
            try:
                resp = await http.get(url.rstrip("/") + "/varz")
                resp.raise_for_status()
                body = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                errors.append(f"{url}: {exc or type(exc).__name__}")
                continue
            if not isinstance(body, dict):
                errors.append(f"{url}: /varz is not a JSON object")
                continue
            return NatsSample.from_varz(body, at)
    raise ProbeError("NATS monitoring endpoint unreachable: " + "; ".join(errors))


def _force_close(client: aiomqtt.Client) -> None:
    with contextlib.suppress(Exception):
        client._client._reset_sockets()


class MqttProbe:
    """The ``mqtt`` target."""

    target = "mqtt"

    def __init__(self, settings: MqttProbeConfig, *, bus: MqttConfig) -> None:
        self.settings = settings
        self.bus = MqttConfig(url=settings.url, topic_root=bus.topic_root,
                              keepalive_s=bus.keepalive_s) if settings.url else bus
        self.uptime = UptimeWatch()
        self._n = 0
        self._nats_urls = [u.strip() for u in settings.nats_monitor_url.split(",") if u.strip()]
        self._nats_prev: NatsSample | None = None

    async def check(self) -> Reading:
        """Check the brokers of the URL in order; the first that passes answers. A cluster node that
        failed before it is a warning (degraded), naming the node and why; all failing is a failure."""
        failed: list[str] = []
        endpoints = self.bus.endpoints()
        for ep in endpoints:
            try:
                reading = await self._check_broker(ep)
            except ProbeError as exc:
                if len(endpoints) == 1:
                    raise
                failed.append(f"{ep.host}:{ep.port}: {exc}")
                continue
            if failed:
                reading = replace(reading, warnings=(
                    *(f"cluster node unreachable ({why})" for why in failed), *reading.warnings))
            return reading
        raise ProbeError(f"no broker of the {len(endpoints)} answers: " + "; ".join(failed))

    async def _check_broker(self, ep: MqttEndpoint) -> Reading:
        cfg = self.settings
        loop = asyncio.get_running_loop()
        self._n += 1
        client_id = f"opsdash-probe-mqtt-{os.getpid()}-{self._n}"
        canary = cfg.canary_topic or f"{self.bus.topic_root}/probe-canary/{client_id}"
        nonce = f"{client_id}:{time.time_ns()}".encode()
        client = aiomqtt.Client(ep.host, ep.port, username=ep.username, password=ep.password,
                                identifier=client_id, keepalive=max(5, int(cfg.timeout_s) + 5),
                                timeout=cfg.timeout_s, clean_session=True,
                                tls_params=aiomqtt.TLSParameters() if ep.tls else None)
        t0 = time.perf_counter()
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            _force_close(client)
            raise _mqtt_error(exc, f"{ep.host}:{ep.port}") from exc
        except BaseException:
            _force_close(client)
            raise
        connect_ms = (time.perf_counter() - t0) * 1000
        sys: dict[str, str] = {}
        try:
            try:
                nats = bool(self._nats_urls)  # NATS has no $SYS: only the canary
                await client.subscribe([(canary, 1)] if nats else [(SYS_FILTER, 0), (canary, 1)])
                t_pub = time.perf_counter()
                await client.publish(canary, nonce, qos=1)
                rtt_ms: float | None = None
                sys_deadline = loop.time() + cfg.sys_wait_s
                canary_deadline = loop.time() + max(cfg.sys_wait_s, cfg.timeout_s * 0.8 - connect_ms / 1000)
                messages = client.messages.__aiter__()
                while True:
                    have_sys = nats or all(t in sys for t in _WANTED)
                    if rtt_ms is not None and (have_sys or loop.time() >= sys_deadline):
                        break
                    deadline = canary_deadline if rtt_ms is None else sys_deadline
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        async with asyncio.timeout(remaining):
                            msg = await messages.__anext__()
                    except TimeoutError:
                        continue
                    topic = msg.topic.value
                    if topic == canary and msg.payload == nonce:
                        rtt_ms = (time.perf_counter() - t_pub) * 1000
                    elif topic.startswith(_S) and isinstance(msg.payload, bytes | bytearray):
                        sys[topic[len(_S):]] = bytes(msg.payload).decode("utf-8", "replace")
                if rtt_ms is None:
                    waited = time.perf_counter() - t_pub
                    raise ProbeError(f"canary not echoed within {waited:.1f} s: the broker accepts "
                                     f"connections but does not route messages")
            except aiomqtt.MqttError as exc:
                raise _mqtt_error(exc, f"{ep.host}:{ep.port}") from exc
        except BaseException:
            _force_close(client)
            raise
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await client.__aexit__(None, None, None)
        if rtt_ms is None:  # pragma: no cover - raised above
            raise ProbeError("canary lost")
        sample: NatsSample | None = None
        prev = self._nats_prev
        if self._nats_urls:
            sample = await read_varz(self._nats_urls, max(0.5, cfg.timeout_s / 2), loop.time())
            self._nats_prev = sample
        uptime = parse_sys(sys)["uptime_s"]
        stuck = self.uptime.update(None if uptime is None else float(uptime), loop.time())
        return mqtt_reading(MqttRaw(
            connect_ms=connect_ms, sys=sys, canary_rtt_ms=rtt_ms, uptime_stuck_s=stuck,
            stuck_limit_s=max(30.0, 3 * cfg.period_s),
            extra={"restarts_seen": self.uptime.restarts, "canary_topic": canary},
            nats=sample, nats_prev=prev, nats_cluster_size=cfg.nats_cluster_size))


def _mqtt_error(exc: aiomqtt.MqttError, where: str) -> ProbeError:
    text = str(exc)
    low = text.lower()
    if "refused" in low and ("111" in low or "connection refused" in low):
        return ProbeError(f"connection refused: nothing listens on {where}")
    if "not authori" in low or "bad user name or password" in low or "code:5" in low or "code:4" in low:
        return ProbeError(f"authentication failed at {where}: {text}")
    return ProbeError(f"broker {where}: {text}")
