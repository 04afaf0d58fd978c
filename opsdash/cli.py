"""The ``opsdash`` command: one entry point for every part (design.md section 7).

    opsdash aggregator   fold the bus into the view and publish it
    opsdash probes       run the active checks and publish their results
    opsdash gateway      serve the view: WebSocket, REST, frontend
    opsdash recorder     write what the bus carries into the history database (OPSDASH_HISTORY_URL)
    opsdash notifier     send alert notifications (webhooks, Alertmanager); view_stale
    opsdash up           all of them in one process (the recorder when history is on)
    opsdash demo         up + a simulated platform (private broker/database when none is configured)
    opsdash watch URL    terminal client of a gateway (wall screen without a browser)
    opsdash export grafana-dashboard|prometheus-rules   the Prometheus/Grafana migration path

Logging is configured here and only here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from opsdash.config import Config, ConfigError, load_config

log = logging.getLogger("opsdash")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="opsdash", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML config file (default: $OPSDASH_CONFIG)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("aggregator", help="fold the bus into the view and publish it")
    sub.add_parser("probes", help="run the active checks and publish their results")
    sub.add_parser("gateway", help="serve the view over WebSocket and REST, and the frontend")
    sub.add_parser("recorder", help="write the bus into the history database (needs OPSDASH_HISTORY_URL)")
    sub.add_parser("notifier", help="send alert notifications to webhooks and Alertmanager")
    sub.add_parser("up", help="aggregator + probes + gateway (+ recorder with history on) in one process")
    demo = sub.add_parser(
        "demo", help="up + a simulated platform, with private servers if needed",
        description="Everything on one machine: aggregator, probes, gateway with the dashboard, a "
                    "simulated platform (services ingest/evaluator/dispatcher/delivery, several "
                    "instances each, errors, crashes, a delivery backlog) and a seeded platform "
                    "database that keeps changing. Without a configured broker (OPSDASH_MQTT_URL) or "
                    "database (OPSDASH_DATABASE_URL) it starts private mosquitto and PostgreSQL "
                    "servers in a temporary directory, and removes them on exit (Ctrl-C or SIGTERM).")
    demo.add_argument("--no-browser-hint", action="store_true", help=argparse.SUPPRESS)
    from opsdash.demo import add_arguments as add_demo_arguments
    add_demo_arguments(demo)
    health = sub.add_parser("healthcheck", help="exit 0 if a part of opsdash works (for compose)",
                            description="Check one part of opsdash by what it does: the gateway's "
                                        "/healthz (and its broker connection), the aggregator's view "
                                        "patches on the bus, the probes' heartbeat on the bus. Exit 0 "
                                        "when healthy, 1 when not; one line says why.")
    health.add_argument("part", choices=["gateway", "aggregator", "probes", "recorder", "notifier"])
    health.add_argument("--url", help="gateway base URL (default: from gateway.listen)")
    health.add_argument("--instance", help="instance id (default: aggregator.id, or the host name)")
    health.add_argument("--timeout", type=float, help="seconds to wait (default: 3 intervals + 2)")
    export = sub.add_parser(
        "export", help="Prometheus rules / a Grafana dashboard over the gateway's /metrics",
        description="Print a Grafana dashboard (JSON) or Prometheus alerting rules (YAML) over the "
                    "gateway's /metrics, for teams that also run Prometheus/Grafana (docs/deploy.md). "
                    "Rules that have no PromQL equivalent are listed in the output and on stderr.")
    export.add_argument("what", choices=["grafana-dashboard", "prometheus-rules"])
    export.add_argument("--job", default="opsdash",
                        help="Prometheus job name of the gateways (default opsdash)")
    export.add_argument("-o", "--output", help="write to this file instead of stdout")
    watch = sub.add_parser("watch", help="render the live view of a gateway in the terminal")
    watch.add_argument("url", help="gateway URL, e.g. http://127.0.0.1:8787")
    watch.add_argument("--token", help="bearer token (display tokens work)")
    return p


async def _run_parts(parts: Sequence[Callable[[Config], Coroutine[Any, Any, None]]], config: Config) -> None:
    async with asyncio.TaskGroup() as tg:
        for part in parts:
            tg.create_task(part(config), name=getattr(part, "__module__", "part"))


def _export(config: Config, what: str, job: str, output: str | None) -> int:
    import json
    import re

    from opsdash import export

    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", job):
        print(f"opsdash: --job: {job!r} is not a Prometheus job name", file=sys.stderr)
        return 2
    if what == "grafana-dashboard":
        text = json.dumps(export.grafana_dashboard(config, job), indent=2) + "\n"
    else:
        rules = export.prometheus_rules(config, job)
        text = export.rules_yaml(rules)
        for s in rules.skipped:
            print(f"opsdash export: not translated: {s.name}: {s.reason}", file=sys.stderr)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _run(part: Coroutine[Any, Any, None]) -> None:
    """Run a long-running part until it ends, Ctrl-C, or SIGTERM (docker stop, systemd, a supervisor).
    SIGTERM cancels it as Ctrl-C does, at an await: each part says goodbye (status offline "stopped",
    not its Last Will "lost") and closes its connections before the process exits."""

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        stopping = False

        def stop() -> None:
            nonlocal stopping
            stopping = True
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
        try:
            await part
        except asyncio.CancelledError:
            if not stopping:
                raise

    asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        # one INFO line per probe HTTP request floods the log; keep them for --log-level DEBUG
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"opsdash: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        match args.command:
            case "aggregator":
                from opsdash.wiring import run_aggregator
                _run(run_aggregator(config))
            case "probes":
                from opsdash.wiring import run_probes
                _run(run_probes(config))
            case "gateway":
                from opsdash.wiring import run_gateway
                _run(run_gateway(config))
            case "recorder":
                from history.recorder import HISTORY_OFF
                from opsdash.wiring import run_recorder
                if not config.history.enabled:
                    print(f"opsdash recorder: {HISTORY_OFF}", file=sys.stderr)
                    return 2
                _run(run_recorder(config))
            case "notifier":
                from opsdash.wiring import run_notifier
                _run(run_notifier(config))
            case "up":
                from history.recorder import HISTORY_OFF
                from opsdash.wiring import run_aggregator, run_gateway, run_notifier, run_probes, run_recorder
                parts = [run_aggregator, run_probes, run_gateway]
                if config.alerts.notifier:
                    parts.append(run_notifier)
                if config.history.enabled:
                    parts.append(run_recorder)
                else:
                    log.info("opsdash up: %s", HISTORY_OFF)
                _run(_run_parts(parts, config))
            case "demo":
                from opsdash.demo import run_demo
                return run_demo(config, args)
            case "healthcheck":
                from opsdash.selfreport import healthcheck
                ok, why = asyncio.run(healthcheck(config, args.part, instance=args.instance,
                                                  url=args.url, timeout=args.timeout))
                print(("healthy: " if ok else "unhealthy: ") + why)
                return 0 if ok else 1
            case "export":
                return _export(config, args.what, args.job, args.output)
            case "watch":
                from gateway.watch import run_watch
                return asyncio.run(run_watch(args.url, args.token))
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"opsdash: bad configuration: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
