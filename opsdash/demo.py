"""``opsdash demo``: a living dashboard of a busy platform, from one command, on one machine.

What it runs, all in one process tree:

1. A broker and a database: the configured ones (``OPSDASH_MQTT_URL`` / ``OPSDASH_DATABASE_URL``, or
   ``mqtt.url`` / ``probes.database_url`` in the config file), else a private mosquitto (with
   deploy/mosquitto.conf settings) and a private PostgreSQL cluster started from the machine's binaries
   in a temporary directory, on free ports.
2. The platform database: created from opsdash/platform-schema.sql, seeded (tenants, devices, alerts,
   integrations) and kept changing (:mod:`opsdash.platform_db`).
3. Simulated InfluxDB 3 and Keycloak endpoints for their probes, unless real ones are configured
   (:mod:`opsdash.standins`).
4. opsdash itself: aggregator, probes, gateway (with the built frontend) and the recorder, exactly as
   ``opsdash up``. History goes to ``OPSDASH_HISTORY_URL`` when set, else to a database ``opsdash``
   created on the demo's PostgreSQL, which first gets ``--past-hours`` (8) of simulated past (the
   simulator's day shape, an InfluxDB outage 3 h ago, a delivery backlog 5 h ago: history/generate.py)
   written in the background, newest hour first, so the 6 h and 24 h views are filled at once.
5. The simulated platform services (:mod:`opsdash.simulator`): one process per instance.

Ctrl-C or SIGTERM stops everything in reverse order: the simulated instances shut down cleanly,
the parts stop, the private servers stop and the temporary directory is removed. A demo killed outright
(kill -9) leaves its private PostgreSQL behind; the next ``opsdash demo`` finds and removes it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import msgspec

from opsdash.config import ENV_ALIASES, Config
from opsdash.servers import Mosquitto, PrivatePostgres
from probes.config import ProcessTarget

log = logging.getLogger("opsdash.demo")

TEMP_PREFIX = "opsdash-demo-"
PLATFORM_DB = "iotcloud"
HISTORY_DB = "opsdash"


async def create_history_database(admin_dsn: str) -> str:
    """Database ``opsdash`` on the server of ``admin_dsn`` (created if missing); its DSN."""
    from opsdash.platform_db import create_database

    return await create_database(admin_dsn, HISTORY_DB)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``opsdash demo`` (cli.py calls this for its ``demo`` subparser)."""
    from opsdash.simulator import add_arguments as add_sim_arguments

    p.add_argument("--listen", metavar="HOST:PORT", default=None,
                   help="where the dashboard is served (default: gateway.listen, 127.0.0.1:8787; "
                        "a free port is picked when that one is taken and none was asked for)")
    p.add_argument("--temp-dir", metavar="DIR", default=None,
                   help="where the private servers live (default: the system's temporary directory); "
                        "removed on exit")
    p.add_argument("--tenants", type=int, default=40, help="tenants to seed (default 40)")
    p.add_argument("--devices", type=int, default=3000, help="devices to seed (default 3000)")
    p.add_argument("--past-hours", type=float, default=8.0,
                   help="hours of simulated past written into a history database the demo creates "
                        "(default 8; 0: none)")
    p.add_argument("--no-simulator", action="store_true",
                   help="run without the simulated services (only real reporters show up)")
    add_sim_arguments(p)


# -- what is configured ------------------------------------------------------------------------


def configured(keypath: tuple[str, ...], config_path: str | None, env: Mapping[str, str]) -> bool:
    """Whether the user set ``keypath`` (environment alias, ``OPSDASH_A__B`` or the TOML file)."""
    aliases = [name for name, path in ENV_ALIASES.items() if path == keypath]
    generic = "OPSDASH_" + "__".join(p.upper() for p in keypath)
    if any(env.get(n) for n in [*aliases, generic]):
        return True
    path = config_path or env.get("OPSDASH_CONFIG")
    if not path:
        return False
    try:
        with open(path, "rb") as fh:
            node: Any = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return False
    for part in keypath:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _replace(config: Config, section: str, **changes: Any) -> Config:
    sub = getattr(config, section)
    return msgspec.structs.replace(config, **{section: msgspec.structs.replace(sub, **changes)})


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def reap_stale(root: Path) -> list[Path]:
    """Remove temporary directories of demos that died without cleaning up (their pid is gone)."""
    removed = []
    for d in sorted(root.glob(f"{TEMP_PREFIX}*")):
        pidfile = d / "demo.pid"
        try:
            pid = int(pidfile.read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            continue
        if (d / "postgres" / "data").exists():
            PrivatePostgres(d / "postgres").stop()
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


# -- the demo ----------------------------------------------------------------------------------


class Demo:
    def __init__(self, config: Config, args: argparse.Namespace, env: Mapping[str, str] | None = None,
                 out: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.args = args
        self.env = dict(os.environ) if env is None else env
        self.config_path: str | None = getattr(args, "config", None)
        self._out = out or (lambda line: print(line, flush=True))
        self.tmp: Path | None = None
        self.mosquitto: Mosquitto | None = None
        self.postgres: PrivatePostgres | None = None
        self.history_fresh = False  # the demo created the history database (it gets the simulated past)
        self.standins: list[Any] = []
        self.stop = asyncio.Event()
        self.failed: str | None = None

    def say(self, msg: str) -> None:
        self._out(f"[demo] {msg}")

    def _configured(self, *keypath: str) -> bool:
        return configured(keypath, self.config_path, self.env)

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._setup()
            await self._serve()
        except _StartError as exc:
            self.say(f"could not start: {exc}")
            self.failed = str(exc)
        finally:
            await self._teardown()
        return 1 if self.failed else 0

    def _on_signal(self, sig: int) -> None:
        if not self.stop.is_set():
            self.say(f"{signal.Signals(sig).name}: stopping ...")
        self.stop.set()

    async def _setup(self) -> None:
        from opsdash.simulator import settings_from_args

        cfg = self.config
        need_private = not self._configured("mqtt", "url") or not self._configured("probes", "database_url")
        if need_private:
            base = Path(self.args.temp_dir or tempfile.gettempdir())
            await asyncio.to_thread(base.mkdir, parents=True, exist_ok=True)
            for d in await asyncio.to_thread(reap_stale, base):
                self.say(f"removed the leftovers of an earlier demo that was killed: {d}")
            self.tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=base))
            self.tmp.chmod(0o711)  # the postgres user must reach its data directory inside
            (self.tmp / "demo.pid").write_text(str(os.getpid()))
            self.say(f"private servers live in {self.tmp} (removed on exit)")

        # 1. the broker
        if self._configured("mqtt", "url"):
            ep = cfg.mqtt.endpoint()
            self.say(f"MQTT broker: the configured one at {ep.host}:{ep.port}")
        else:
            assert self.tmp is not None
            self.mosquitto = Mosquitto(self.tmp / "mosquitto", die_with_parent=True)
            try:
                await asyncio.to_thread(self.mosquitto.start)
            except (RuntimeError, OSError) as exc:
                raise _StartError(f"mosquitto: {exc}") from exc
            cfg = _replace(cfg, "mqtt", url=self.mosquitto.url)
            self.say(f"MQTT broker: private mosquitto on 127.0.0.1:{self.mosquitto.port} "
                     f"(watch the raw bus: mosquitto_sub -p {self.mosquitto.port} -v -t '$ops/#')")

        # 2. the platform database
        if self._configured("probes", "database_url"):
            dsn = cfg.probes.database_url
            self.say(f"PostgreSQL: the configured database {_redact(dsn)}")
        else:
            assert self.tmp is not None
            if os.geteuid() == 0 and not await asyncio.to_thread(_postgres_can_reach, self.tmp):
                raise _StartError(
                    f"PostgreSQL runs as the user postgres, which cannot reach {self.tmp}: choose a "
                    "--temp-dir whose parent directories others may enter (e.g. under /tmp)")
            self.say("PostgreSQL: starting a private cluster (initdb) ...")
            self.postgres = PrivatePostgres(self.tmp / "postgres")
            try:
                await asyncio.to_thread(self.postgres.start)
            except subprocess.CalledProcessError as exc:
                err = (exc.stderr or b"").decode(errors="replace").strip()[-500:]
                raise _StartError(f"PostgreSQL: {' '.join(map(str, exc.cmd[-3:]))}: {err}") from exc
            except (RuntimeError, OSError) as exc:
                raise _StartError(f"PostgreSQL: {exc}") from exc
            from opsdash.platform_db import create_database

            dsn = await create_database(self.postgres.admin_dsn, PLATFORM_DB)
            cfg = _replace(cfg, "probes", database_url=dsn)
            if not self._configured("probes", "disk", "postgres_data_dir"):
                cfg = msgspec.structs.replace(cfg, probes=msgspec.structs.replace(
                    cfg.probes, disk=msgspec.structs.replace(
                        cfg.probes.disk, postgres_data_dir=str(self.postgres.datadir))))
            self.say(f"PostgreSQL: private server on 127.0.0.1:{self.postgres.port}, "
                     f"database {PLATFORM_DB} (psql -h 127.0.0.1 -p {self.postgres.port} -U postgres "
                     f"{PLATFORM_DB})")

        # the simulation's settings (seed, timings) also drive the stand-ins and the database
        self.sim_settings = settings_from_args(self.args, cfg.mqtt.url, cfg.mqtt.topic_root,
                                               cfg.reporter.interval_s)
        self.say(f"simulation seed {self.sim_settings.seed} (repeat it with --seed "
                 f"{self.sim_settings.seed})")

        from opsdash.platform_db import PlatformDb

        self.platform = PlatformDb(dsn, seed=self.sim_settings.seed, tenants=self.args.tenants,
                                   devices=self.args.devices)
        try:
            owned = await self.platform.prepare()
        except (OSError, Exception) as exc:  # asyncpg raises many kinds; all mean "cannot seed"
            raise _StartError(f"platform database {_redact(dsn)}: {exc}") from exc
        self.say("platform database: schema opsdash/platform-schema.sql, "
                 + (f"seeded ({len(self.platform.tenant_ids)} active tenants, "
                    f"{len(self.platform.online) + len(self.platform.offline)} devices) and kept changing"
                    if owned else "already holds a platform: left unchanged"))

        # history: a database of its own (design.md section 8)
        if self._configured("history", "url"):
            self.say(f"history: the configured database {_redact(cfg.history.url)}")
        else:
            private = self.postgres is not None
            admin = self.postgres.admin_dsn if self.postgres else dsn.rsplit("/", 1)[0] + "/postgres"
            try:
                hdsn = await create_history_database(admin)
            except (OSError, Exception) as exc:  # asyncpg raises many kinds; all mean "no history"
                self.say(f"history: off (could not create database {HISTORY_DB}: {exc})")
            else:
                cfg = _replace(cfg, "history", url=hdsn)
                self.history_fresh = private  # simulated past only into a server of our own
                self.say(f"history: database {HISTORY_DB} on the same server ({cfg.history.retention_days} "
                         "days kept; the recorder writes it)")

        # 3. stand-ins for InfluxDB and Keycloak
        from opsdash.standins import REALM, InfluxStandIn, KeycloakStandIn

        if not self._configured("probes", "influxdb", "url"):
            influx = InfluxStandIn(self.sim_settings)
            await influx.start()
            self.standins.append(influx)
            cfg = msgspec.structs.replace(cfg, probes=msgspec.structs.replace(
                cfg.probes, influxdb=msgspec.structs.replace(cfg.probes.influxdb, url=influx.url)))
            self.say(f"InfluxDB: simulated stand-in on {influx.url} (no InfluxDB 3 on this machine; "
                     "set OPSDASH_PROBES__INFLUXDB__URL for a real one)")
        if not self._configured("probes", "keycloak", "management_url"):
            kc = KeycloakStandIn(self.sim_settings)
            await kc.start()
            self.standins.append(kc)
            cfg = msgspec.structs.replace(cfg, probes=msgspec.structs.replace(
                cfg.probes, keycloak=msgspec.structs.replace(
                    cfg.probes.keycloak, management_url=kc.url, url=kc.url, realm=REALM,
                    client_id="opsdash-probes", client_secret="demo")))
            self.say(f"Keycloak: simulated stand-in on {kc.url} (set "
                     "OPSDASH_PROBES__KEYCLOAK__MANAGEMENT_URL for a real one)")
        if not self._configured("probes", "platform", "period_s"):
            # the seeded platform changes every 2 s: count it every 10 s rather than every minute
            cfg = msgspec.structs.replace(cfg, probes=msgspec.structs.replace(
                cfg.probes, platform=msgspec.structs.replace(cfg.probes.platform, period_s=10.0)))

        # 3b. alerts: a webhook receiver stand-in that logs what it gets, and rules for the scenario
        cfg = await self._alerts(cfg)

        if not self._configured("probes", "processes", "targets"):
            cfg = _replace(cfg, "probes", processes=msgspec.structs.replace(
                cfg.probes.processes, targets=self._process_targets()))
            self.say("memory and CPU per simulated instance, broker and database from /proc and cgroups "
                     "(no Docker here; set OPSDASH_PROBES__PROCESSES__TARGETS for others)")

        # 4. where the dashboard is served
        from gateway.config import parse_listen

        listen = self.args.listen or cfg.gateway.listen
        host, port = parse_listen(listen)
        if not self.args.listen and not self._configured("gateway", "listen") and not _port_free(host, port):
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            self.say(f"port {listen} is taken: serving on {host}:{port} instead")
            listen = f"{host}:{port}"
        cfg = _replace(cfg, "gateway", listen=listen)
        self.host, self.port = host, port
        self.config = cfg

    async def _alerts(self, cfg: Config) -> Config:
        from alerts.config import RuleConfig
        from alerts.receiver import WebhookReceiver

        acfg = cfg.alerts
        if not acfg.webhook_urls and not acfg.alertmanager_urls:
            hook = WebhookReceiver()
            await hook.start()
            self.standins.append(hook)
            acfg = msgspec.structs.replace(acfg, webhook_urls=[hook.url])
            self.say(f"alerts: notifications go to a webhook stand-in on {hook.url} (its log shows them; "
                     "set OPSDASH_ALERTS__WEBHOOK_URLS or OPSDASH_ALERTS__ALERTMANAGER_URLS for real ones)")
        if not self._configured("alerts", "rules"):
            # The scenario's backlog and killed instance fire and resolve within the first minutes
            # (the built-ins wait longer: component_degraded needs 120 s).
            acfg = msgspec.structs.replace(acfg, rules=[
                RuleConfig(name="instance_down", metric="services.*.instances.*.status", op="==",
                           value="down", for_s=5, keep_firing_s=15, severity="critical",
                           summary="{service}/{instance} is down{reason_suffix}"),
                RuleConfig(name="delivery_backlog", metric="gauge:delivery:pending_jobs", op=">",
                           value=60, for_s=10, keep_firing_s=20, severity="warning",
                           summary="delivery backlog: {value} webhook jobs pending"),
            ])
        return msgspec.structs.replace(cfg, alerts=acfg)

    def _process_targets(self) -> list[ProcessTarget]:
        """What the capacity section's memory shows in the demo: every simulated instance (one OS
        process each), the private broker and database (postgres with its backends), and opsdash."""
        from opsdash.simulator import SERVICES

        targets = [ProcessTarget(name="opsdash", service="opsdash", pid=os.getpid())]
        if not self.args.no_simulator:
            for svc in SERVICES:
                for i in range(1, self.sim_settings.instances.get(svc, 0) + 1):
                    targets.append(ProcessTarget(
                        name=f"{svc}-{i}", service=svc,
                        match=rf"opsdash\.simulator instance --service {svc} --index {i} ",
                        under_pid=os.getpid()))  # not another demo's instances on this host
        if self.mosquitto is not None and self.mosquitto.proc is not None:
            targets.append(ProcessTarget(name="mosquitto", service="mqtt", pid=self.mosquitto.proc.pid))
        if self.postgres is not None:
            targets.append(ProcessTarget(name="postgres", service="postgres", tree=True,
                                         pid_file=str(self.postgres.datadir / "postmaster.pid")))
        return targets

    async def _serve(self) -> None:
        if self.stop.is_set():  # stopped while starting
            return
        from opsdash.simulator import Simulator
        from opsdash.wiring import run_aggregator, run_gateway, run_notifier, run_probes

        cfg = self.config
        # the simulated past first (the aggregator backfills its series from it at start)
        past = asyncio.create_task(self._history_past(), name="history past") if self.history_fresh else None
        if past is not None:
            await asyncio.wait([past], timeout=2.0)  # the newest hour, when the machine is quick
        parts: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            ("aggregator", lambda: run_aggregator(cfg)),
            ("probes", lambda: run_probes(cfg)),
            ("gateway", lambda: run_gateway(cfg)),
            ("notifier", lambda: run_notifier(cfg)),
            ("platform database", self.platform.run),
        ]
        if cfg.history.enabled:
            from opsdash.wiring import run_recorder

            parts.append(("recorder", lambda: run_recorder(cfg)))
        if not self.args.no_simulator:
            sim = Simulator(self.sim_settings)
            parts.append(("simulator", sim.run))
        tasks: dict[asyncio.Future[Any], str] = {asyncio.create_task(fn(), name=name): name
                                                for name, fn in parts}
        recorder = ", recorder" if cfg.history.enabled else ""
        self.say(f"started: aggregator, probes, gateway, notifier{recorder}"
                 + (f", simulator ({', '.join(f'{k} x{v}' for k, v in self.sim_settings.instances.items())})"
                    if not self.args.no_simulator else ""))
        stopper = asyncio.create_task(self.stop.wait())
        try:
            ready = asyncio.create_task(self._wait_gateway())
            done, _ = await asyncio.wait([*tasks, stopper, ready], return_when=asyncio.FIRST_COMPLETED)
            if ready in done and ready.result():
                shown = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
                self.say(f"dashboard ready: open http://{shown}:{self.port}/   (Ctrl-C stops everything)")
                done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            for t in done:
                if t in tasks and not t.cancelled() and t.exception() is not None:
                    self.failed = f"{tasks[t]} failed: {t.exception()!r}"
                    self.say(self.failed)
                elif t in tasks:
                    self.failed = f"{tasks[t]} stopped unexpectedly"
                    self.say(self.failed)
        finally:
            stopper.cancel()
            if past is not None and not past.done():
                past.cancel()
            # the simulated services first (they say goodbye on the bus), then opsdash
            order = sorted(tasks, key=lambda t: tasks[t] != "simulator")
            for t in order:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(t, 15)

    async def _history_past(self) -> None:
        """Write the simulated past into the fresh history database (history/generate.py)."""
        from history.generate import demo_model, past

        hours = float(getattr(self.args, "past_hours", 8.0) or 0.0)
        if hours <= 0:
            return
        s = self.sim_settings
        now = time.time()
        m = demo_model(now, day_s=s.day_s, day_t0=s.t0, day_phase=0.42 + (s.seed % 97) / 970,
                       ingest_rate=s.ingest_rate)
        started = time.monotonic()
        try:
            n = await past(self.config.history.url, m, now - hours * 3600, now - 1)
        except Exception as exc:
            self.say(f"history: no simulated past ({type(exc).__name__}: {exc})")
            return
        self.say(f"history: {hours:g} h of simulated past written ({n} seconds, an outage 3 h ago, a "
                 f"backlog 5 h ago) in {time.monotonic() - started:.0f} s")

    async def _wait_gateway(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else ("::1" if self.host == "::" else self.host)
        while time.monotonic() < deadline:
            try:
                _, w = await asyncio.open_connection(host, self.port)
                w.close()
                return True
            except OSError:
                await asyncio.sleep(0.1)
        self.say(f"the gateway does not answer on {host}:{self.port} after {timeout:.0f} s")
        return False

    async def _teardown(self) -> None:
        for s in self.standins:
            with contextlib.suppress(Exception):
                await s.stop()
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
            self.say("PostgreSQL stopped")
        if self.mosquitto is not None:
            await asyncio.to_thread(self.mosquitto.stop)
            self.say("mosquitto stopped")
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.say(f"removed {self.tmp}")
        self.say("stopped cleanly" if not self.failed else "stopped after a failure")


class _StartError(Exception):
    pass


def _postgres_can_reach(path: Path) -> bool:
    """As root: whether the postgres user can enter ``path`` (initdb would fail otherwise)."""
    try:
        return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(path)],
                              check=False, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return True  # cannot tell: let initdb say what is wrong


def _redact(dsn: str) -> str:
    """A DSN without its password, for printing."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return dsn


def run_demo(config: Config, args: argparse.Namespace) -> int:
    """``opsdash demo``: see the module docstring. Returns the exit code."""
    if not hasattr(args, "tenants"):  # called with the bare subparser: fill in the defaults
        p = argparse.ArgumentParser()
        add_arguments(p)
        defaults = vars(p.parse_args([]))
        for k, v in defaults.items():
            if not hasattr(args, k):
                setattr(args, k, v)
    return asyncio.run(Demo(config, args).main())
