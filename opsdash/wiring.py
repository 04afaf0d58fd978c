"""The command owns the wiring: each ``opsdash <part>`` builds its part from the configuration here.

The parts (``telemetry_bus``, ``probes``, ``gateway``, ``history``, ``alerts``) take their own config
types and never import ``opsdash``; this module assembles them from :class:`opsdash.config.Config`,
adds opsdash's self-report (``opsdash/selfreport.py``) and runs them until cancelled.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.server import Gateway, GatewayFailed, GatewayStartError
from opsdash.config import Config, ConfigError
from opsdash.selfreport import self_reporting
from telemetry_bus.reporter import Reporter

__all__ = ["run_gateway"]

log = logging.getLogger("opsdash.wiring")


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
