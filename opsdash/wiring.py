"""The command owns the wiring: each ``opsdash <part>`` builds its part from the configuration here.

The parts (``telemetry_bus``, ``probes``, ``gateway``, ``history``, ``alerts``) take their own config
types and never import ``opsdash``; this module assembles them from :class:`opsdash.config.Config`,
adds opsdash's self-report (``opsdash/selfreport.py``) and runs them until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from alerts.bus import AlertsSection
from alerts.engine import compile_rules
from alerts.notifier import Notifier
from gateway.server import Gateway, GatewayFailed, GatewayStartError
from history.recorder import HISTORY_OFF, RecorderService
from opsdash.config import Config, ConfigError
from opsdash.selfreport import self_reporting
from probes.runner import MqttPublisher, ProbeRunner, build_probes
from telemetry_bus.contract import ProbeResult
from telemetry_bus.graph import GraphSection
from telemetry_bus.reporter import Reporter
from telemetry_bus.service import AggregatorService

__all__ = ["build_aggregator", "run_aggregator", "run_gateway", "run_notifier", "run_probes", "run_recorder"]

log = logging.getLogger("opsdash.wiring")


# -- the aggregator ------------------------------------------------------------------------------------

def build_aggregator(config: Config, clock: Callable[[], float] = time.time) -> AggregatorService:
    """The aggregator with every view section: the fold's own, then ``graph`` after ``health``
    (telemetry_bus/graph.py) and ``alerts`` at the end (alerts/bus.py, over the view built before it)."""
    acfg = config.aggregator
    alerts = AlertsSection.create(compile_rules(config.alerts), config.mqtt.topic_root,
                                  config.alerts.recent_max, sync_id=f"aggregator-{acfg.id}")
    service = AggregatorService(acfg, config.mqtt, clock, alerts=alerts,
                                history_url=config.history.url if config.history.enabled else None)
    known = [*acfg.expected_services, *acfg.expected_probes]
    service.add_section("graph", GraphSection(config.graph, known), after="health")
    service.add_section("alerts", alerts)
    return service


async def run_aggregator(config: Config) -> None:
    """``opsdash aggregator``: run until cancelled (Ctrl-C)."""
    service = build_aggregator(config)
    with contextlib.suppress(asyncio.CancelledError):
        async with self_reporting(config, "aggregator") as rep:
            service.reporter = rep
            await service.run()


# -- the probes ----------------------------------------------------------------------------------------

async def run_probes(config: Config) -> None:
    """``opsdash probes``: every enabled probe on its period, results retained on the bus."""
    probes = build_probes(config.probes, config.mqtt)
    runner = ProbeRunner(probes)
    publisher = MqttPublisher(config.mqtt)
    log.info("probes: running %s, publishing to %s under %s",
             ", ".join(p.target for p in probes) or "nothing", config.mqtt.endpoint().host,
             config.mqtt.topic_root)
    try:
        async with self_reporting(config, "probes") as rep, asyncio.TaskGroup() as tg:
            def submit(target: str, result: ProbeResult) -> None:
                # opsdash watches itself: each check counted on the bus like any service's work
                rep.inc("probe_runs")
                if result.status == "down":
                    rep.inc("probe_failures")
                if result.latency_ms is not None:
                    rep.observe("probe_ms", result.latency_ms)
                publisher.submit(target, result)

            tg.create_task(publisher.run(), name="probes-publisher")
            tg.create_task(runner.run(submit), name="probes-runner")
    finally:
        for p in probes:
            closer = getattr(p, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()


# -- the gateway ---------------------------------------------------------------------------------------


async def run_gateway(config: Config) -> None:
    """``opsdash gateway``: serve until cancelled."""
    try:
        gw = Gateway(config.gateway, config.mqtt, app_config=config)
    except GatewayStartError as exc:
        raise ConfigError(f"gateway: {exc}") from exc

    async with gw, self_reporting(config, "gateway", gw.id) as rep:
        # opsdash watches itself: the gateway's own figures on the bus, once per reporter interval
        reporter_task = asyncio.create_task(_report_gateway(gw, rep), name="gateway:selfreport")
        try:
            await gw.wait_closed()
        finally:
            reporter_task.cancel()
    if gw.failure is not None:  # a background task kept dying: exit non-zero so a supervisor restarts us
        raise GatewayFailed(f"gateway {gw.id} stopped: {gw.failure}") from gw.failure


async def _report_gateway(gw: Gateway, rep: Reporter) -> None:
    counted = ("patches_sent_total", "snapshots_sent_total", "resyncs_total", "dropped_slow_total",
               "auth_failures_total", "connections_total", "bad_messages_total")
    last = dict.fromkeys(counted, 0)
    while True:
        for name in counted:
            value = getattr(gw.counters, name)
            rep.inc(name.removesuffix("_total"), max(0, value - last[name]))
            last[name] = value
        rep.set_gauge("clients_connected", sum(1 for c in gw.clients.values() if c.live))
        age = gw.view_age()  # the store's stamps are monotonic: never age them with time.time()
        if age is not None:  # unknown before the first view: not reported as 0
            rep.set_gauge("view_age_s", age)
        if not gw.mqtt_connected:
            rep.set_health("degraded", "not connected to the broker")
        else:
            rep.set_health("ok")
        await asyncio.sleep(rep.interval_s)


# -- history and alerts --------------------------------------------------------------------------------

async def run_recorder(config: Config) -> None:
    """``opsdash recorder``: run until cancelled. Refuses to start with history off."""
    if not config.history.enabled:
        raise RuntimeError(HISTORY_OFF)
    service = RecorderService(config)
    with contextlib.suppress(asyncio.CancelledError):
        async with self_reporting(config, "recorder") as rep:
            service.reporter = rep
            await service.run()


async def run_notifier(config: Config) -> None:
    """``opsdash notifier``: run until cancelled."""
    notifier = Notifier(config)
    if not notifier.receivers:
        log.info("notifier: no alerts.webhook_urls or alerts.alertmanager_urls: alerts are shown, not sent")
    with contextlib.suppress(asyncio.CancelledError):
        async with self_reporting(config, "notifier") as rep:
            notifier.reporter = rep
            await notifier.run()
