"""Running the probes: each in its own task, with its timeout and the state rules, publishing to MQTT.

    runner = ProbeRunner(build_probes(config.probes, config.mqtt))
    results = await runner.run_once()          # tests: every probe once, no MQTT
    # ``opsdash probes`` (opsdash/wiring.py): runner.run(publisher.submit) beside MqttPublisher.run()

A probe is an object with ``target``, ``settings`` (a :class:`probes.config.ProbeSettings`) and
``async def check() -> Reading`` that raises :class:`probes.core.ProbeError` on failure. The runner
wraps every check in ``asyncio.timeout(settings.timeout_s)``, so a hung target never delays another
probe (each has its own task) nor the event loop (blocking file-system work runs in threads).

The publisher keeps only the latest result per target while the broker is away and sends those on
reconnect (jittered, capped backoff).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import aiomqtt

from probes.config import ProbesConfig, ProbeSettings
from probes.core import ProbeError, ProbeState, Reading, TimedOut, judge
from telemetry_bus.config import MqttConfig
from telemetry_bus.contract import ProbeResult, encode, topics
from telemetry_bus.reconnect import Backoff, Brokers, reconnect_forever

__all__ = ["MqttPublisher", "Probe", "ProbeRunner", "build_probes"]

log = logging.getLogger("opsdash.probes")


class Probe(Protocol):
    @property
    def target(self) -> str: ...

    @property
    def settings(self) -> ProbeSettings: ...

    async def check(self) -> Reading: ...


Sink = Callable[[str, ProbeResult], Any]


class ProbeRunner:
    """Runs checks with timeouts and the state rules; ``run_once`` for tests, ``run`` forever.

    ``clock`` gives the result timestamps (Unix seconds); durations use the event loop's clock.
    """

    def __init__(self, probes: Iterable[Probe], *, clock: Callable[[], float] = time.time) -> None:
        self.probes: list[Probe] = list(probes)
        targets = [p.target for p in self.probes]
        if len(set(targets)) != len(targets):
            raise ValueError(f"probe targets must be unique, got {targets!r}")
        self.clock = clock
        self.states: dict[str, ProbeState] = {p.target: ProbeState() for p in self.probes}
        self._last_error: dict[str, str | None] = {}

    def probe(self, target: str) -> Probe:
        for p in self.probes:
            if p.target == target:
                return p
        raise KeyError(target)

    async def check_once(self, probe: Probe) -> ProbeResult:
        """One check of one probe with its timeout, judged by the state rules."""
        settings = probe.settings
        outcome: Reading | ProbeError | TimedOut
        try:
            async with asyncio.timeout(settings.timeout_s) as scope:
                outcome = await probe.check()
        except TimeoutError:
            # expired: ours; otherwise a library's own timeout, shorter than ours
            outcome = TimedOut(settings.timeout_s) if scope.expired() else ProbeError("timeout")
        except ProbeError as exc:
            outcome = exc
        except Exception as exc:  # a bug or an unmapped library error: report, never crash the loop
            log.debug("probe %s: unexpected error", probe.target, exc_info=True)
            outcome = ProbeError(f"{type(exc).__name__}: {exc}")
        result = judge(outcome, self.states[probe.target], now=self.clock(),
                       period_s=settings.period_s, latency_budget_ms=settings.latency_budget_ms)
        self._log_change(probe.target, result)
        return result

    def _log_change(self, target: str, result: ProbeResult) -> None:
        """Log a problem once when it appears or changes, and the recovery; never every period."""
        previous = self._last_error.get(target)
        key = f"{result.status}:{result.error}" if result.error else None
        if key == previous:
            return
        self._last_error[target] = key
        if result.status == "unknown":
            log.warning("probe %s: %s", target, result.error)
        elif result.status == "down":
            log.error("probe %s down: %s", target, result.error)
        elif result.error:
            log.warning("probe %s %s: %s", target, result.status, result.error)
        elif previous is not None:
            log.info("probe %s: %s again", target, result.status)

    async def run_once(self) -> dict[str, ProbeResult]:
        """Every enabled probe once, concurrently; results by target."""
        results = await asyncio.gather(*(self.check_once(p) for p in self.probes))
        return {p.target: r for p, r in zip(self.probes, results, strict=True)}

    async def run(self, sink: Sink) -> None:
        """Run every probe on its own period until cancelled; ``sink(target, result)`` gets each result."""
        async with asyncio.TaskGroup() as tg:
            for probe in self.probes:
                tg.create_task(self._loop(probe, sink), name=f"probe-{probe.target}")

    async def _loop(self, probe: Probe, sink: Sink) -> None:
        loop = asyncio.get_running_loop()
        settings = probe.settings
        while True:
            started = loop.time()
            result = await self.check_once(probe)
            try:
                sink(probe.target, result)
            except Exception:
                log.exception("probe %s: result sink failed", probe.target)
            failures = self.states[probe.target].failures
            retrying = result.status != "unknown" and 0 < failures < 2
            delay = min(settings.retry_s, settings.period_s) if retrying else settings.period_s
            await asyncio.sleep(max(0.0, started + delay - loop.time()))


class MqttPublisher:
    """Publishes probe results retained, QoS 1; keeps the latest per target while disconnected."""

    def __init__(self, mqtt: MqttConfig, *, client_id: str | None = None,
                 backoff_initial_s: float = 0.2, backoff_max_s: float = 10.0) -> None:
        self.mqtt = mqtt
        self.root = mqtt.topic_root
        #: the brokers of mqtt.url in turn (failover to the next node of a cluster)
        self.brokers = Brokers(mqtt.endpoints())
        self.client_id = client_id or f"opsdash-probes-{socket.gethostname()[:20]}-{os.getpid()}"
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.pending: dict[str, ProbeResult] = {}
        self.connected = asyncio.Event()
        self.published = 0
        self._wake = asyncio.Event()

    def submit(self, target: str, result: ProbeResult) -> None:
        """Queue a result; an older unsent result of the same target is replaced."""
        self.pending[target] = result
        self._wake.set()

    def _client(self) -> aiomqtt.Client:
        ep = self.brokers.current
        return aiomqtt.Client(ep.host, ep.port, username=ep.username, password=ep.password,
                              identifier=self.client_id, keepalive=self.mqtt.keepalive_s, timeout=10,
                              tls_params=aiomqtt.TLSParameters() if ep.tls else None)

    async def run(self) -> None:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        down_since: float | None = None

        async def session() -> None:
            nonlocal down_since
            async with self._client() as client:
                self.connected.set()
                if down_since is not None:
                    log.info("probes: broker reachable again after %.1f s", time.monotonic() - down_since)
                down_since = None
                backoff.reset()
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._drain(client), name="probes-publish")
                    # iterating messages raises MqttError when the connection drops, also while
                    # there is nothing to publish (we subscribe to nothing)
                    tg.create_task(self._watch(client), name="probes-watch")

        def lost(_exc: Exception) -> None:
            nonlocal down_since
            self.connected.clear()
            if down_since is None:
                down_since = time.monotonic()

        await reconnect_forever(session, backoff, what="probes (keeping the latest result per target)",
                                logger=log, on_lost=lost, brokers=self.brokers)

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        async for _ in client.messages:
            pass

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            target = next(iter(self.pending))
            result = self.pending.pop(target)
            try:
                await client.publish(topics.probe(self.root, target), encode(result), qos=1, retain=True)
            except BaseException:
                self.pending.setdefault(target, result)  # unless a newer one arrived meanwhile
                raise
            self.published += 1


def build_probes(pc: ProbesConfig, mqtt: MqttConfig) -> list[Probe]:
    """The enabled probes of the ``[probes]`` configuration (``mqtt``: the bus the MQTT probe checks)."""
    from probes.disk import DiskProbe
    from probes.docker import DockerProbe
    from probes.influxdb import InfluxProbe
    from probes.keycloak import KeycloakProbe
    from probes.mqtt import MqttProbe
    from probes.platform import PlatformProbe
    from probes.postgres import PostgresProbe
    from probes.processes import ProcessesProbe

    candidates: Sequence[Probe] = [
        PostgresProbe(pc.postgres, url=pc.postgres_url()),
        PlatformProbe(pc.platform, url=pc.platform_url()),
        MqttProbe(pc.mqtt, bus=mqtt),
        InfluxProbe(pc.influxdb),
        KeycloakProbe(pc.keycloak),
        DockerProbe(pc.docker),
        DiskProbe(pc.disk),
        # where there is no Docker socket: memory and CPU of the configured processes / units
        ProcessesProbe(pc.processes, docker_socket=pc.docker.socket if pc.docker.enabled else None),
    ]
    return [p for p in candidates if p.settings.enabled]
