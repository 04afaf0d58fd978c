"""opsdash watches itself: its parts report on the bus like any platform service, and are checked so.

Each part (aggregator, probes, gateway) runs a :class:`telemetry_bus.reporter.Reporter` as service
``opsdash-<part>`` (so the dashboard shows when a part of opsdash is down, with its own counters), and
``opsdash healthcheck <part>`` (the compose healthchecks) checks what that part does, not a bare port:

- ``gateway``: ``GET /healthz`` answers 200 and the gateway is connected to the broker.
- ``aggregator``: a view patch arrives on ``<root>/v1/view/patch`` within a few ticks (the aggregator
  is folding and publishing), and its own heartbeat is not ``down``/``offline``, when it reports one.
- ``recorder``: like ``probes`` (its heartbeat says ``degraded`` while the history database is away).
- ``probes``: its heartbeat (``<root>/v1/svc/opsdash-probes/<instance>/metrics``) arrives within
  3 intervals, and is not ``down``.

With the compose ACL (deploy/mosquitto/acl) each part connects with its service name as MQTT user, so
it writes (and reads back) only ``<root>/v1/svc/opsdash-<part>/...``.

Where each part starts it (``async with self_reporting(config, "aggregator") as rep:`` around its run
loop) and which counters it keeps is listed in docs/deploy.md ("opsdash watches itself").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from opsdash.config import Config
    from telemetry_bus.config import MqttEndpoint
    from telemetry_bus.reporter import Reporter

Part = Literal["aggregator", "probes", "gateway", "recorder", "notifier"]
PARTS: Final[tuple[Part, ...]] = ("aggregator", "probes", "gateway", "recorder", "notifier")


def service_name(part: str) -> str:
    """The bus service name (and MQTT user in compose) of an opsdash part: ``opsdash-<part>``."""
    return f"opsdash-{part}"


def default_instance(part: str, config: Config | None = None) -> str:
    """The instance id of this part here: the aggregator's id, else the (container) host name."""
    if part == "aggregator" and config is not None:
        return config.aggregator.id
    host = re.sub(r"[^a-z0-9_.-]", "-", socket.gethostname().lower()).strip("-._") or "local"
    return host[:63]


def _version() -> str:
    try:
        return metadata.version("opsdash")
    except metadata.PackageNotFoundError:
        return ""


def self_reporter(config: Config, part: str, instance: str | None = None) -> Reporter:
    """A (not yet started) Reporter for an opsdash part, on the configured bus."""
    from telemetry_bus.reporter import Reporter

    return Reporter.from_config(service_name(part), instance or default_instance(part, config), config.mqtt,
                                config.reporter, version=_version())


@contextlib.asynccontextmanager
async def self_reporting(config: Config, part: str, instance: str | None = None) -> AsyncIterator[Reporter]:
    """Start a part's reporter for the duration of the block; stop it cleanly (status offline)."""
    rep = self_reporter(config, part, instance)
    await rep.start()
    try:
        yield rep
    finally:
        await rep.stop()


# -- opsdash healthcheck -----------------------------------------------------------------------


async def _check_gateway(config: Config, url: str | None, timeout: float) -> tuple[bool, str]:
    import httpx

    from gateway.config import parse_listen

    if url is None:
        host, port = parse_listen(config.gateway.listen)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            r = await client.get(url.rstrip("/") + "/healthz")
    except httpx.HTTPError as exc:
        return False, f"gateway {url}: {exc!r}"
    if r.status_code != 200:
        return False, f"gateway {url}/healthz: HTTP {r.status_code}"
    try:
        body = r.json()
    except ValueError:
        return False, f"gateway {url}/healthz: not JSON"
    if not (body.get("mqtt") or {}).get("connected", False):
        return False, f"gateway {url}: not connected to the broker"
    reasons = "; ".join(body.get("reasons") or [])
    return True, f"gateway {url}: {body.get('status', '?')}" + (f" ({reasons})" if reasons else "")


async def _check_bus(config: Config, part: str, instance: str, timeout: float) -> tuple[bool, str]:
    """Listen on the first broker of ``mqtt.url`` that answers (the nodes of a cluster in turn)."""
    import aiomqtt

    errors: list[str] = []
    for ep in config.mqtt.endpoints():
        try:
            return await _check_bus_on(ep, config, part, instance, timeout)
        except aiomqtt.MqttError as exc:
            errors.append(f"broker {ep.host}:{ep.port}: {exc}")
    return False, f"{part}: " + "; ".join(errors)


async def _check_bus_on(ep: MqttEndpoint, config: Config, part: str, instance: str,
                        timeout: float) -> tuple[bool, str]:
    import aiomqtt

    root = config.mqtt.topic_root
    svc = f"{root}/v1/svc/{service_name(part)}/{config.mqtt.topic_name(instance)}"
    want_patch = part == "aggregator"
    heartbeat: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    patch_seen = False
    try:
        async with asyncio.timeout(timeout):
            async with aiomqtt.Client(
                    ep.host, ep.port, username=ep.username, password=ep.password,
                    identifier=f"healthcheck-{part}-{instance}-{int(time.time() * 1000) % 100000}"[:64],
                    tls_params=aiomqtt.TLSParameters() if ep.tls else None, timeout=timeout) as client:
                await client.subscribe(f"{svc}/status", qos=1)
                await client.subscribe(f"{svc}/metrics", qos=0)
                if want_patch:
                    await client.subscribe(f"{root}/v1/view/patch", qos=0)
                async for msg in client.messages:
                    topic = str(msg.topic)
                    payload = msg.payload if isinstance(msg.payload, bytes) else b""
                    try:
                        data = json.loads(payload) if payload else {}
                    except (ValueError, RecursionError):  # deep nesting raises RecursionError
                        data = {}
                    if topic.endswith("/status"):
                        status = data
                    elif topic.endswith("/metrics"):
                        heartbeat = data
                    else:
                        patch_seen = True
                    if (want_patch and patch_seen) or (not want_patch and heartbeat is not None):
                        break
    except TimeoutError:
        pass
    if heartbeat is not None and heartbeat.get("health") == "down":
        return False, f"{part} {instance} reports down: {heartbeat.get('detail', '')}"
    if status is not None and status.get("state") == "offline" and heartbeat is None:
        return False, f"{part} {instance} is offline ({status.get('reason', '')})"
    if want_patch:
        return (patch_seen, f"aggregator: view patches {'arrive' if patch_seen else 'do not arrive'}"
                + ("" if heartbeat is None else f"; heartbeat {heartbeat.get('health', '?')}"))
    if heartbeat is None:
        return False, f"{part} {instance}: no heartbeat on {svc}/metrics within {timeout:.0f} s"
    return True, f"{part} {instance}: heartbeat {heartbeat.get('health', '?')}"


async def healthcheck(config: Config, part: str, *, instance: str | None = None, url: str | None = None,
                      timeout: float | None = None) -> tuple[bool, str]:
    """(healthy, explanation) of one opsdash part, as ``opsdash healthcheck`` reports it."""
    interval = config.reporter.interval_s
    if part == "gateway":
        return await _check_gateway(config, url, timeout or 5.0)
    wait = timeout or max(3 * interval, 3 * config.aggregator.tick_s) + 2
    return await _check_bus(config, part, instance or default_instance(part, config), wait)
