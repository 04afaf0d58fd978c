"""A simulated IoT platform for the demo: the seed's services, several instances each, on the real bus.

Every instance is its own OS process (``python -m opsdash.simulator instance ...``) that reports with the
real :class:`telemetry_bus.reporter.Reporter`, so a simulated crash is a real ``kill -9``: the broker
sends the instance's Last Will and the dashboard sees it go down, then come back with a new boot.

What the instances report (names as the view maps them, design.md section 2):

- ``ingest``: ``messages_received``, ``messages_written``, gauge ``queue_depth``, histogram
  ``influx_write_ms`` (lognormal, median ~3 ms, a slow tail); events ``parse_error``, ``quarantined``,
  ``auth_failed``, ``token_expired``, ``rate_limited``.
- ``evaluator``: ``rules_evaluated``, ``alerts_created``.
- ``dispatcher``: ``alerts_routed``.
- ``delivery``: ``webhooks_sent``, ``webhooks_failed``, gauge ``pending_jobs``; events
  ``webhook_timeout``, ``webhook_failed``. Every ``backlog_every_s`` a customer's webhook endpoint gets
  slow: pending jobs build past the degraded threshold (50) and drain again.

Rates follow a compressed "day" (``day_s`` seconds: quiet night, morning ramp, afternoon peak) with
short wiggles and Poisson noise, so a 15-minute chart looks like a real platform. All randomness comes
from ``seed``; all timings are settings, so tests run the whole thing fast.

The :class:`Simulator` supervisor starts the instance processes, kills one every few minutes
(``kill_every_s``) and starts it again after ``down_s``; it restarts an instance that died by itself.
``python -m opsdash.simulator run --mqtt-url ...`` runs the supervisor alone (the compose ``simulator``
service); ``opsdash demo`` runs it inside the demo.

MQTT credentials: with an ACL that binds each service to its own subtree (deploy/mosquitto/acl), an
instance of service ``S`` connects as user ``S`` with the password in ``MQTT_PASSWORD_<S>`` when that
variable is set; otherwise with the credentials of ``--mqtt-url``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Coroutine, Sequence
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec

from opsdash.simdata import TENANTS, poisson

log = logging.getLogger("opsdash.simulator")

SERVICES: Final = ("ingest", "evaluator", "dispatcher", "delivery")
VERSIONS: Final = {"ingest": "2.4.1", "evaluator": "1.9.0", "dispatcher": "1.3.2", "delivery": "3.0.4"}

class SimSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the simulation depends on; the same settings and seed give the same random draws."""

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    topic_root: str = "$ops"
    interval_s: float = 1.0
    seed: int = 0
    #: Instances per service.
    instances: dict[str, int] = msgspec.field(
        default_factory=lambda: {"ingest": 3, "evaluator": 2, "dispatcher": 2, "delivery": 2})
    #: Platform-wide ingest rate (messages/s) at the daily mean.
    ingest_rate: float = 120.0
    #: Length of one simulated day in seconds (20 min by default: a 15-min chart shows its shape).
    day_s: float = 1200.0
    #: Scales every error/event rate (0 turns them off).
    error_scale: float = 1.0
    #: Mean seconds between two instance kills (0: never); the first kill after ``first_kill_s``.
    kill_every_s: float = 180.0
    first_kill_s: float = 60.0
    #: A killed instance comes back after a time in this range.
    down_s: tuple[float, float] = (8.0, 25.0)
    #: A delivery backlog episode starts every this many seconds (0: never), first after
    #: ``first_backlog_s``, and lasts ``backlog_s`` (build-up, then drain).
    backlog_every_s: float = 300.0
    first_backlog_s: float = 40.0
    backlog_s: float = 100.0
    #: Peak pending delivery jobs of an episode (the default degraded threshold is 50).
    backlog_peak: float = 140.0
    #: Simulation step inside an instance (counts are drawn per step).
    step_s: float = 0.25
    #: Wall-clock start of the simulation, shared by all instances (set by the supervisor).
    t0: float = 0.0

    def __post_init__(self) -> None:
        for name, n in self.instances.items():
            if name not in SERVICES or not 0 <= n <= 50:
                raise ValueError(f"instances: {name}={n!r} (services: {', '.join(SERVICES)}; 0..50)")
        if self.day_s <= 0 or self.step_s <= 0 or self.interval_s <= 0:
            raise ValueError("day_s, step_s and interval_s must be > 0")
        if self.down_s[0] < 0 or self.down_s[1] < self.down_s[0]:
            raise ValueError(f"down_s must be (low, high) with 0 <= low <= high, got {self.down_s!r}")


# -- the shape of a day ------------------------------------------------------------------------


def daily_factor(t: float, settings: SimSettings) -> float:
    """Load relative to the daily mean at wall time ``t``: night ~0.35, afternoon peak ~1.6."""
    phase = ((t - settings.t0) / settings.day_s + 0.42 + (settings.seed % 97) / 970) % 1.0
    hour = 24 * phase
    day = (0.35 + 1.15 * math.exp(-(((hour - 14.5) / 4.2) ** 2))
           + 0.35 * math.exp(-(((hour - 9.0) / 1.4) ** 2)))
    wiggle = 1 + 0.07 * math.sin(2 * math.pi * t / 47) + 0.05 * math.sin(2 * math.pi * t / 131 + 1.3)
    return day * wiggle


def backlog_level(t: float, settings: SimSettings) -> float:
    """Fraction (0..1) of the backlog episode's peak at wall time ``t``: rises, peaks, drains."""
    if settings.backlog_every_s <= 0:
        return 0.0
    since = t - settings.t0 - settings.first_backlog_s
    if since < 0:
        return 0.0
    x = (since % settings.backlog_every_s) / settings.backlog_s
    if x >= 1:
        return 0.0
    # build for the first 55 %, drain over the rest (a jobs queue drains faster than it builds)
    return x / 0.55 if x < 0.55 else max(0.0, 1 - (x - 0.55) / 0.45)


def instance_url(mqtt_url: str, service: str, env: dict[str, str] | None = None) -> str:
    """``mqtt_url`` with user ``service`` and password ``MQTT_PASSWORD_<SERVICE>`` when that is set."""
    env = dict(os.environ) if env is None else env
    password = env.get(f"MQTT_PASSWORD_{service.upper()}")
    if not password:
        return mqtt_url
    parts = urlsplit(mqtt_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(service, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- one instance ------------------------------------------------------------------------------


EventTuple = tuple[str, str, str, dict[str, str]]
#: counters, observations per histogram, gauges, events (kind, message, severity, attrs)
Step = tuple[dict[str, int], dict[str, list[float]], dict[str, int | float], list[EventTuple]]


class InstanceModel:
    """What one instance does per step: pure (no I/O), driven by a seeded RNG and the wall time.

    ``step(t, dt)`` returns counters, observations, gauges and events for the reporter.
    """

    def __init__(self, settings: SimSettings, service: str, index: int, boot_no: int = 0) -> None:
        self.s = settings
        self.service = service
        self.index = index
        n = max(1, settings.instances.get(service, 1))
        self.rng = random.Random(f"{settings.seed}/{service}/{index}/{boot_no}")
        # uneven load balancing: instance shares differ by a few percent
        self.share = (1 / n) * (1 + 0.08 * (self.rng.random() - 0.5))
        self.pending = self.rng.uniform(0, 4)
        self.queue = 0.0

    def _events(self, rate_per_s: float, dt: float) -> int:
        return poisson(self.rng, rate_per_s * self.s.error_scale * self.share * dt)

    def step(self, t: float, dt: float) -> Step:
        rng, s = self.rng, self.s
        load = daily_factor(t, s) * s.ingest_rate * self.share
        counters: dict[str, int] = {}
        obs: dict[str, list[float]] = {}
        gauges: dict[str, int | float] = {}
        events: list[EventTuple] = []
        tenant = rng.choice(TENANTS)
        device = f"dev-{rng.randrange(10000):04d}"
        match self.service:
            case "ingest":
                received = poisson(rng, load * dt)
                parse_errors = self._events(0.05, dt)
                quarantined = self._events(0.015, dt)
                slow = rng.random() < 0.004  # a compaction or GC pause on the time-series store
                lat = [rng.lognormvariate(math.log(3.0), 0.5) * (rng.uniform(6, 15) if slow else 1)
                       for _ in range(received)]
                lat = [x * rng.lognormvariate(math.log(6), 0.4) if rng.random() < 0.01 else x for x in lat]
                counters["messages_received"] = received
                counters["messages_written"] = max(0, received - parse_errors - quarantined)
                obs["influx_write_ms"] = lat
                mean_ms = sum(lat) / len(lat) if lat else 3.0
                target = load * mean_ms / 1000 * 6  # Little's law, with batching
                self.queue += (target - self.queue) * min(1.0, dt * 2)
                gauges["queue_depth"] = round(self.queue + rng.random() * 2)
                for _ in range(parse_errors):
                    col = rng.randrange(20, 180)
                    events.append(("parse_error", f"Invalid JSON from {device}: Expecting ',' delimiter: "
                                   f"line 1 column {col}", "error", {"tenant": tenant, "device": device}))
                for _ in range(quarantined):
                    why = rng.choice([f"payload {rng.randrange(300, 2000)} KiB over limit 256 KiB",
                                      "unknown schema version 7", "timestamp 3 days in the future"])
                    events.append(("quarantined", f"message from {device} quarantined: {why}", "warning",
                                   {"tenant": tenant, "device": device}))
                for _ in range(self._events(0.03, dt)):
                    events.append(("auth_failed", f"device {device}: bad signature on connect", "warning",
                                   {"tenant": tenant, "device": device}))
                for _ in range(self._events(0.012, dt)):
                    tok = f"tok-{rng.randrange(16**6):06x}"
                    events.append(("token_expired", f"Device {tok} token expired {rng.randrange(1, 60)} min "
                                   "ago", "warning", {"tenant": tenant}))
                for _ in range(self._events(0.02, dt)):
                    events.append(("rate_limited", f"tenant {tenant} over {rng.choice([200, 500, 1000])} "
                                   "msg/s: throttled", "warning", {"tenant": tenant}))
            case "evaluator":
                counters["rules_evaluated"] = poisson(rng, load * 2.6 * dt)
                counters["alerts_created"] = poisson(rng, load * 0.018 * dt)
            case "dispatcher":
                counters["alerts_routed"] = poisson(rng, load * 0.018 * dt)
            case "delivery":
                level = backlog_level(t, s)
                offered = load * 0.0145 * dt + (self.pending * 0.02)
                target = level * s.backlog_peak * self.share * max(1, s.instances.get("delivery", 1)) / 2
                # during an episode one big customer's endpoint is slow: jobs wait, some time out
                if level > 0:
                    self.pending += (target - self.pending) * min(1.0, dt * 0.8)
                else:
                    self.pending = max(0.0, self.pending - dt * 6) + rng.random() * 0.3 * dt
                sent = poisson(rng, offered * (0.35 if level > 0.2 else 1.0))
                timeouts = self._events(0.03 + 0.4 * level, dt)
                failed = self._events(0.01, dt)
                counters["webhooks_sent"] = sent
                counters["webhooks_failed"] = timeouts + failed
                gauges["pending_jobs"] = round(self.pending)
                for _ in range(timeouts):
                    events.append(("webhook_timeout", f"POST https://hooks.{tenant}.example/alerts timed out "
                                   "after 10 s", "error", {"tenant": tenant}))
                for _ in range(failed):
                    code = rng.choice([500, 502, 503, 404, 410])
                    events.append(("webhook_failed", f"POST https://hooks.{tenant}.example/alerts returned "
                                   f"{code}", "error", {"tenant": tenant, "status": str(code)}))
        return counters, obs, gauges, events


class WebhookDeliveryError(Exception):
    """What the simulated delivery worker logs with a traceback when a customer's endpoint fails."""


def log_now(logger: logging.Logger, rng: random.Random, service: str, events: list[EventTuple],
            dt: float, scale: float) -> None:
    """A simulated service's own log lines, next to its events: what a real one would log."""
    if rng.random() < 0.01 * dt * scale:
        logger.warning("%s: garbage collection paused the worker for %d ms", service,
                       rng.randrange(120, 900))
    for kind, message, _severity, attrs in events:
        if kind == "webhook_failed" and rng.random() < 0.5:
            try:
                raise WebhookDeliveryError(message)
            except WebhookDeliveryError:
                logger.exception("delivery worker gave up on tenant %s after 3 attempts",
                                 attrs.get("tenant", "?"))
        elif kind == "parse_error" and rng.random() < 0.2:
            logger.warning("ingest batch from %s rejected: %s", attrs.get("device", "?"), message)
    if service == "ingest" and rng.random() < 0.004 * dt * scale:
        logger.error("InfluxDB write retried 3 times: 503 Service Unavailable (compaction running)")


async def run_instance(settings: SimSettings, service: str, index: int, boot_no: int = 0) -> None:
    """One simulated instance: report until SIGTERM/SIGINT, then shut down cleanly (status offline)."""
    from telemetry_bus.loghandler import BusLogHandler
    from telemetry_bus.reporter import Reporter

    model = InstanceModel(settings, service, index, boot_no)
    rep = Reporter(service, f"{service}-{index}", mqtt_url=instance_url(settings.mqtt_url, service),
                   topic_root=settings.topic_root, interval_s=settings.interval_s,
                   version=VERSIONS[service])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await rep.start()
    # the service's own log records (WARNING and above) go to the bus as events of type "log",
    # as in a real service (docs/protocol.md "log records"); not to the demo's terminal
    applog = logging.getLogger(f"{service}.app")
    applog.propagate = False
    applog.addHandler(BusLogHandler(rep))
    lograng = random.Random(f"{settings.seed}/{service}/{index}/{boot_no}/log")
    last = time.time()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.step_s)
            now = time.time()
            dt, last = now - last, now
            counters, obs, gauges, events = model.step(now, dt)
            for name, n in counters.items():
                rep.inc(name, n)
            for name, values in obs.items():
                for v in values:
                    rep.observe(name, v)
            for name, g in gauges.items():
                rep.set_gauge(name, g)
            for kind, message, severity, attrs in events:
                rep.event(kind, message, severity=severity, attrs=attrs)
            log_now(applog, lograng, service, events, dt, settings.error_scale)
            if service == "delivery":
                pending = gauges.get("pending_jobs", 0.0)
                rep.set_health("degraded" if pending > 100 else "ok",
                               f"{pending:.0f} webhook jobs waiting" if pending > 100 else "")
    finally:
        await rep.stop()


# -- the supervisor ----------------------------------------------------------------------------


class Simulator:
    """Starts the instance processes, kills one now and then, restarts it; stops them all on exit."""

    def __init__(self, settings: SimSettings, python: str = sys.executable) -> None:
        if not settings.t0:
            settings = msgspec.structs.replace(settings, t0=time.time())
        self.settings = settings
        self.python = python
        self.rng = random.Random(f"{settings.seed}/supervisor")
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.boots: dict[str, int] = {}
        self.kills = 0
        self.restarts = 0
        self._stopping = False
        self._down: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def names(self) -> list[tuple[str, int]]:
        return [(svc, i) for svc in SERVICES for i in range(1, self.settings.instances.get(svc, 0) + 1)]

    async def _spawn(self, service: str, index: int) -> None:
        name = f"{service}-{index}"
        boot_no = self.boots.get(name, -1) + 1
        self.boots[name] = boot_no
        self.procs[name] = await asyncio.create_subprocess_exec(
            self.python, "-m", "opsdash.simulator", "instance", "--service", service,
            "--index", str(index), "--boot-no", str(boot_no),
            "--settings", msgspec.json.encode(self.settings).decode(),
            stdin=asyncio.subprocess.DEVNULL, start_new_session=False)

    async def start(self) -> None:
        for service, index in self.names():
            await self._spawn(service, index)
        log.info("simulator: %d instances of %s (seed %d)", len(self.procs), ", ".join(
            f"{svc} x{self.settings.instances.get(svc, 0)}" for svc in SERVICES), self.settings.seed)

    async def run(self) -> None:
        """Start, then supervise until cancelled; always stops the instances on the way out."""
        try:
            await self.start()
            await asyncio.gather(self._chaos(), self._watch())
        finally:
            await self.stop()

    async def _chaos(self) -> None:
        s = self.settings
        if s.kill_every_s <= 0 or not self.procs:
            await asyncio.Event().wait()
        await asyncio.sleep(s.first_kill_s)
        while True:
            alive = [n for n, p in self.procs.items() if p.returncode is None and n not in self._down]
            if alive:
                victim = self.rng.choice(sorted(alive))
                down_for = self.rng.uniform(*s.down_s)
                self._down.add(victim)
                proc = self.procs[victim]
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
                await proc.wait()
                self.kills += 1
                log.warning("simulator: killed %s (kill -9, pid %d); it comes back in %.0f s",
                            victim, proc.pid, down_for)
                self._later(self._revive(victim, down_for))
            await asyncio.sleep(s.kill_every_s * self.rng.uniform(0.6, 1.4))

    def _later(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _revive(self, name: str, after: float) -> None:
        await asyncio.sleep(after)
        if self._stopping:
            return
        service, _, index = name.rpartition("-")
        await self._spawn(service, int(index))
        self._down.discard(name)
        self.restarts += 1
        log.info("simulator: %s is back (boot %d)", name, self.boots[name])

    async def _watch(self) -> None:
        """Restart an instance that exited by itself (after a short pause), as an orchestrator would."""
        while True:
            await asyncio.sleep(1.0)
            for name, proc in list(self.procs.items()):
                if proc.returncode is not None and name not in self._down and not self._stopping:
                    log.warning("simulator: %s exited with %s; restarting it", name, proc.returncode)
                    self._down.add(name)
                    self._later(self._revive(name, 2.0))

    async def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM every instance (clean shutdown: status offline), SIGKILL what is left after timeout."""
        self._stopping = True
        for t in list(self._tasks):
            t.cancel()
        procs = [p for p in self.procs.values() if p.returncode is None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        if procs:
            await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs],
                                            timeout=timeout)
            for p in procs:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    await p.wait()


# -- command line ------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The simulator's options (shared by ``opsdash demo`` and ``python -m opsdash.simulator run``)."""
    g = p.add_argument_group("simulated platform")
    g.add_argument("--seed", type=int, default=None,
                   help="random seed (default: a new one each run, printed at start)")
    g.add_argument("--instances", metavar="SERVICE=N[,...]", default="",
                   help="instances per service, e.g. ingest=4,delivery=3 (default ingest=3, others 2)")
    g.add_argument("--ingest-rate", type=float, default=120.0,
                   help="platform-wide messages/s at the daily mean (default 120)")
    g.add_argument("--day-seconds", type=float, default=1200.0,
                   help="length of one simulated day (default 1200: a 15-min chart shows its shape)")
    g.add_argument("--kill-every", type=float, default=180.0, metavar="SECONDS",
                   help="mean time between two instance kills (kill -9), 0 = never (default 180)")
    g.add_argument("--first-kill", type=float, default=60.0, metavar="SECONDS",
                   help="time of the first kill (default 60)")
    g.add_argument("--backlog-every", type=float, default=300.0, metavar="SECONDS",
                   help="period of the delivery backlog episodes, 0 = never (default 300)")
    g.add_argument("--first-backlog", type=float, default=40.0, metavar="SECONDS",
                   help="start of the first backlog episode (default 40)")
    g.add_argument("--error-scale", type=float, default=1.0,
                   help="multiply every error/event rate (default 1; 0 = no errors)")


def parse_instances(spec: str) -> dict[str, int]:
    out = {"ingest": 3, "evaluator": 2, "dispatcher": 2, "delivery": 2}
    for part in filter(None, (x.strip() for x in spec.split(","))):
        name, _, n = part.partition("=")
        if name not in SERVICES or not n.isdigit():
            raise ValueError(f"--instances: expected SERVICE=N with SERVICE one of {', '.join(SERVICES)}, "
                             f"got {part!r}")
        out[name] = int(n)
    return out


def settings_from_args(args: argparse.Namespace, mqtt_url: str, topic_root: str,
                       interval_s: float) -> SimSettings:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    return SimSettings(
        mqtt_url=mqtt_url, topic_root=topic_root, interval_s=interval_s, seed=seed,
        instances=parse_instances(args.instances), ingest_rate=args.ingest_rate, day_s=args.day_seconds,
        error_scale=args.error_scale, kill_every_s=args.kill_every, first_kill_s=args.first_kill,
        backlog_every_s=args.backlog_every, first_backlog_s=args.first_backlog, t0=time.time())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m opsdash.simulator",
                                description="The demo's simulated platform services on the ops bus.")
    sub = p.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("instance", help="one instance (started by the supervisor)")
    inst.add_argument("--service", required=True, choices=SERVICES)
    inst.add_argument("--index", type=int, required=True)
    inst.add_argument("--boot-no", type=int, default=0)
    inst.add_argument("--settings", required=True, help="SimSettings as JSON")
    run = sub.add_parser("run", help="the supervisor: all instances, kills and restarts")
    run.add_argument("--mqtt-url", default=os.environ.get("OPSDASH_MQTT_URL", "mqtt://127.0.0.1:1883"))
    run.add_argument("--topic-root", default=os.environ.get("OPSDASH_TOPIC_ROOT", "$ops"))
    run.add_argument("--interval", type=float, default=float(os.environ.get("OPSDASH_INTERVAL_S", "1")))
    run.add_argument("--database-url", default=os.environ.get("OPSDASH_DATABASE_URL", ""),
                     help="also create, seed and keep changing the platform database there")
    add_arguments(run)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cmd == "instance":
        settings = msgspec.json.decode(args.settings, type=SimSettings)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_instance(settings, args.service, args.index, args.boot_no))
        return 0
    try:
        settings = settings_from_args(args, args.mqtt_url, args.topic_root, args.interval)
    except ValueError as exc:
        p.error(str(exc))
    return asyncio.run(_run_standalone(settings, args.database_url))


async def _run_standalone(settings: SimSettings, database_url: str) -> int:
    sim = Simulator(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(sim.run())]
        if database_url:
            from opsdash.platform_db import PlatformDb

            db = PlatformDb(database_url, seed=settings.seed)
            tasks.append(tg.create_task(db.run()))
        await stop.wait()
        for t in tasks:
            t.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(main())
