"""MQTT probe against a real private mosquitto; the runner (black hole, periods, loop lag); the
publisher (retained QoS 1, latest-only while the broker is away); disk figures against du/df."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import time
from pathlib import Path

import aiomqtt
import pytest

from opsdash.config import load_config
from opsdash.wiring import run_probes
from probes.config import (
    DiskProbeConfig,
    InfluxProbeConfig,
    KeycloakProbeConfig,
    MqttProbeConfig,
    PostgresProbeConfig,
)
from probes.disk import DiskProbe
from probes.influxdb import InfluxProbe
from probes.keycloak import KeycloakProbe
from probes.mqtt import MqttProbe
from probes.postgres import PostgresProbe
from probes.runner import MqttPublisher, ProbeRunner, build_probes
from telemetry_bus.config import MqttConfig
from telemetry_bus.contract import ProbeResult, decode_probe
from tests.conftest import eventually
from tests.support.sched import thread_sched
from tests.support.servers import Mosquitto, scaled


async def _sys_value(url: str, topic: str) -> str:
    ep = MqttConfig(url=url).endpoint()
    async with aiomqtt.Client(ep.host, ep.port) as c:
        await c.subscribe(topic)
        async with asyncio.timeout(scaled(5)):
            async for m in c.messages:
                assert isinstance(m.payload, bytes)
                return m.payload.decode()
    raise AssertionError("unreachable")


async def test_sys_figures_and_canary(mosquitto: Mosquitto) -> None:
    ep = MqttConfig(url=mosquitto.url).endpoint()
    extra = [aiomqtt.Client(ep.host, ep.port) for _ in range(3)]
    for c in extra:
        await c.__aenter__()
    try:
        # wait for a $SYS tick that counts the three idle clients (the observer polls, so maybe not it)
        await eventually(lambda: _connected_is(mosquitto.url, 3), timeout=8, interval=0.5, what="$SYS tick")
        canary_topic = "$ops/probe-canary/test"
        seen: list[bytes] = []
        async with aiomqtt.Client(ep.host, ep.port) as watcher:
            await watcher.subscribe(canary_topic)
            probe = MqttProbe(MqttProbeConfig(canary_topic=canary_topic), bus=MqttConfig(url=mosquitto.url))
            result = (await ProbeRunner([probe]).run_once())["mqtt"]
            async with asyncio.timeout(scaled(3)):
                async for m in watcher.messages:
                    assert isinstance(m.payload, bytes)
                    seen.append(m.payload)
                    break
        uptime_after = float((await _sys_value(mosquitto.url, "$SYS/broker/uptime")).split()[0])
    finally:
        for c in extra:
            await c.__aexit__(None, None, None)
    assert result.status == "healthy", result.error
    m = result.metrics
    # 3 idle clients + the probe, or + the observer of the tick: the broker's own figure, never made up
    assert m["connected_clients"] in (3, 4, 5)
    assert m["uptime_s"] is not None and 0 <= uptime_after - m["uptime_s"] <= 2 + 2  # sys_interval 2
    assert m["messages_received_per_s"] is not None and m["messages_received_per_s"] >= 0
    assert m["messages_sent_per_s"] is not None
    assert m["canary_rtt_ms"] is not None and 0 < m["canary_rtt_ms"] < scaled(5) * 1000
    assert result.latency_ms is not None and result.latency_ms > 0
    assert seen and seen[0].startswith(b"opsdash-probe-mqtt-")  # the canary went out on its own topic
    assert result.details["version"].startswith("mosquitto version 2.")


async def _connected_is(url: str, n: int) -> bool:
    return int(await _sys_value(url, "$SYS/broker/clients/connected")) >= n


async def test_broker_stopped_is_down_within_the_probe_timeout(mosquitto: Mosquitto) -> None:
    # the latency budget at its maximum (the timeout): a check slowed by a loaded machine is not
    # "degraded" here, where the first result must say the broker is up
    cfg = MqttProbeConfig(period_s=5.0, timeout_s=2.0, retry_s=0.3, sys_wait_s=0.5, latency_budget_ms=2000.0)
    runner = ProbeRunner([MqttProbe(cfg, bus=MqttConfig(url=mosquitto.url))])
    results: list[tuple[float, ProbeResult]] = []
    task = asyncio.create_task(runner.run(lambda t, r: results.append((time.monotonic(), r))))
    try:
        await eventually(lambda: results, what="first result")
        assert results[0][1].status == "healthy", results[0][1]
        # the next check is 5 s away; stop the broker and wait for the one after it
        mosquitto.kill()
        killed = time.monotonic()
        await eventually(lambda: any(r.status == "down" for _, r in results), timeout=12, what="down")
    finally:
        task.cancel()
    first_fail = next(t for t, r in results if r.status != "healthy")
    down_at = next(t for t, r in results if r.status == "down")
    assert down_at - first_fail <= scaled(cfg.timeout_s)
    assert down_at > killed
    down = next(r for _, r in results if r.status == "down")
    assert down.error is not None and down.error.startswith("connection refused")


async def test_black_hole_is_down_within_timeout_while_others_keep_their_period(
    black_hole, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    hole = f"127.0.0.1:{black_hole.port}"
    timeout = 1.0
    common = {"period_s": 5.0, "timeout_s": timeout, "latency_budget_ms": 500.0}
    probes = [
        PostgresProbe(PostgresProbeConfig(**common), url=f"postgresql://postgres@{hole}/x"),  # type: ignore[arg-type]
        MqttProbe(MqttProbeConfig(**common, sys_wait_s=0.5), bus=MqttConfig(url=f"mqtt://{hole}")),  # type: ignore[arg-type]
        InfluxProbe(InfluxProbeConfig(**common, url=f"http://{hole}", walk_budget_s=0.5)),  # type: ignore[arg-type]
        KeycloakProbe(KeycloakProbeConfig(**common, management_url=f"http://{hole}")),  # type: ignore[arg-type]
        DiskProbe(
            DiskProbeConfig(
                period_s=0.2,
                timeout_s=0.2,
                latency_budget_ms=200,
                walk_budget_s=0.1,
                postgres_data_dir=str(tmp_path),
            )
        ),
    ]
    runner = ProbeRunner(probes)
    loop = asyncio.get_running_loop()
    results: list[tuple[float, str, ProbeResult]] = []
    waited_at: list[float] = []  # beside each result: the loop thread's run-queue wait so far
    hung = ("postgres", "mqtt", "influxdb", "keycloak")
    # When each hung check began, and when a plain timer due at that moment + timeout really fired on
    # this loop: the baseline for "down within the timeout", under whatever load the machine has.
    check_started: dict[str, float] = {}
    timer_fired: dict[str, tuple[float, float]] = {}  # (when, the loop thread's run-queue wait so far)
    for probe in probes:
        if probe.target in hung:
            check = probe.check

            async def timed_check(check=check, target=probe.target):  # type: ignore[no-untyped-def]
                if target not in check_started:
                    check_started[target] = loop.time()
                    loop.call_at(check_started[target] + timeout,
                                 lambda: timer_fired.setdefault(target, (loop.time(), thread_sched()[1])))
                return await check()
            probe.check = timed_check  # type: ignore[method-assign]
    disk_starts: list[float] = []  # when each disk check began
    disk = probes[-1]
    disk_check = disk.check

    async def timed_disk_check():  # type: ignore[no-untyped-def]
        disk_starts.append(loop.time())
        return await disk_check()
    disk.check = timed_disk_check  # type: ignore[method-assign]
    # (how late a 10 ms sleep woke, the part of that the loop's thread spent waiting for a CPU)
    lags: list[tuple[float, float]] = []

    async def lag_monitor() -> None:
        while True:
            t, (_, waited) = loop.time(), thread_sched()
            await asyncio.sleep(0.01)
            lags.append((loop.time() - t - 0.01, thread_sched()[1] - waited))

    ticks: list[float] = []  # a plain timer on the disk probe's 0.2 s schedule: what the loop can keep

    async def ticker() -> None:
        while True:
            t = loop.time()
            ticks.append(t)
            await asyncio.sleep(max(0.0, t + 0.2 - loop.time()))

    started = loop.time()
    monitor = asyncio.create_task(lag_monitor())
    reference = asyncio.create_task(ticker())
    def sink(target: str, result: ProbeResult) -> None:
        results.append((loop.time(), target, result))
        waited_at.append(thread_sched()[1])

    task = asyncio.create_task(runner.run(sink))
    # 1.6 s of running, and every hung probe's first result (late on a loaded machine: the check
    # itself is timed against its own start below)
    await asyncio.sleep(timeout * 1.6)
    await eventually(lambda: {t for _, t, _ in results} >= set(hung), timeout=10 * timeout,
                     what=f"a result of every hung probe, got {sorted({t for _, t, _ in results})}")
    task.cancel()
    monitor.cancel()
    reference.cancel()
    ended = loop.time()
    first_down = min(at for at, t, _ in results if t in hung)
    stalls = [late - waited for late, waited in lags]
    print(f"\nblack hole: checks began {[round(check_started[h] - started, 3) for h in hung]} s in, down "
          f"{[round(next(a for a, t, _ in results if t == h) - check_started[h], 3) for h in hung]} s later "
          f"(timeout {timeout} s); loop lag max {max(w for w, _ in lags) * 1000:.1f} ms, "
          f"{max(stalls) * 1000:.1f} ms without the wait for a CPU; disk checks began "
          f"{[round(t - started, 2) for t in disk_starts]}, results "
          f"{[round(t - started, 2) for t, x, _ in results if x == 'disk']}, plain timer "
          f"{[round(t - started, 2) for t in ticks]}")
    for target in hung:
        i, (at, _, r) = next((i, x) for i, x in enumerate(results) if x[1] == target)
        assert r.status == "down" and r.error == f"timeout: no answer within {timeout:g} s", target
        # not before the timeout, and as soon as the loop could act on it: within 0.1 x timeout of a
        # plain timer due at the same moment, less what the loop's thread waited for a CPU in between
        # (a check left to hang would take the OS's minutes)
        assert at >= check_started[target] + timeout, target
        fired, waited = timer_fired[target]
        assert at - fired - (waited_at[i] - waited) <= 0.1 * timeout, (
            target, at - check_started[target], fired - check_started[target], waited_at[i] - waited)
        # concurrent, not one after the other: every hung check had begun before the first gave up
        assert check_started[target] < first_down, target
    disk_times = [at for at, t, _ in results if t == "disk"]
    # the 0.2 s period kept through 1.6 s of hung neighbours: as many results as a plain timer on the
    # same schedule ticked (less a margin of two), and checks begun no further apart than the timer's
    # own longest pause (plus half a period); a disk probe held up by its neighbours would pause for
    # their whole 1 s
    ref_ticks = [t for t in ticks if t < ended]
    assert len(disk_times) >= len(ref_ticks) - 2, (disk_times, ref_ticks)
    gaps = [b - a for a, b in itertools.pairwise(disk_starts)]
    ref_gaps = [b - a for a, b in itertools.pairwise(ref_ticks)]
    assert max(gaps) < max(ref_gaps) + 0.5 * 0.2, (gaps, ref_gaps)
    # the loop is never blocked (a TLS context per client: ~50 ms; a blocking connect or read on the
    # black hole: the whole timeout): how late any 10 ms sleep woke, less the time the loop's thread
    # waited for a CPU that other processes of the shared machine had (the kernel's figure)
    assert max(stalls) < 0.08, sorted(lags, key=lambda x: x[0] - x[1])[-5:]


async def test_publisher_retained_and_latest_only_while_the_broker_is_away(mosquitto: Mosquitto) -> None:
    pub = MqttPublisher(MqttConfig(url=mosquitto.url), backoff_initial_s=0.05, backoff_max_s=0.3)
    task = asyncio.create_task(pub.run())
    try:
        pub.submit("disk", ProbeResult(ts=1.0, status="healthy"))
        await eventually(lambda: pub.published == 1, what="first publish")
        mosquitto.stop()
        await eventually(lambda: not pub.connected.is_set(), what="disconnect seen")
        for ts in (2.0, 3.0, 4.0):
            pub.submit("disk", ProbeResult(ts=ts, status="degraded"))
        assert list(pub.pending) == ["disk"] and pub.pending["disk"].ts == 4.0
        mosquitto.start()
        await eventually(lambda: pub.published == 2 and not pub.pending, timeout=10, what="flush")
        # retained: a late subscriber gets the latest result, decoded by the contract
        payload = await _sys_value(mosquitto.url, "$ops/v1/probe/disk")
        got = decode_probe(payload.encode())
        assert (got.ts, got.status) == (4.0, "degraded")
    finally:
        task.cancel()


async def test_run_probes_publishes_every_enabled_target(
    mosquitto: Mosquitto, database_url: str, tmp_path: Path
) -> None:
    env = {
        "OPSDASH_MQTT_URL": mosquitto.url,
        "OPSDASH_DATABASE_URL": database_url,
        "OPSDASH_PROBES__DISK__POSTGRES_DATA_DIR": str(tmp_path),
        "OPSDASH_PROBES__DOCKER__SOCKET": str(tmp_path / "no.sock"),
    }
    config = load_config(env=env)
    assert [p.target for p in build_probes(config.probes, config.mqtt)] == [
        "postgres",
        "platform",
        "mqtt",
        "influxdb",
        "keycloak",
        "docker",
        "disk",
        "processes",
    ]
    ep = config.mqtt.endpoint()
    got: dict[str, ProbeResult] = {}
    async with aiomqtt.Client(ep.host, ep.port) as sub:
        await sub.subscribe("$ops/v1/probe/#", qos=1)
        task = asyncio.create_task(run_probes(config))
        try:
            async with asyncio.timeout(scaled(15)):
                async for m in sub.messages:
                    assert isinstance(m.payload, bytes)
                    got[m.topic.value.rsplit("/", 1)[1]] = decode_probe(m.payload)
                    if len(got) == 8:
                        break
        finally:
            task.cancel()
    assert got["postgres"].status == "healthy" and got["mqtt"].status == "healthy"
    assert got["disk"].status in ("healthy", "degraded")
    assert got["platform"].status == "degraded"  # empty database: the reference tables do not exist
    assert got["docker"].error == "unavailable: no docker socket"
    assert got["processes"].error == "unavailable: no processes configured (probes.processes.targets)"
    assert got["influxdb"].status == "unknown" and "probes.influxdb.url" in (got["influxdb"].error or "")


def test_disk_figures_equal_du_and_df(tmp_path: Path) -> None:
    pg = tmp_path / "pg"
    (pg / "base").mkdir(parents=True)
    (pg / "base" / "a").write_bytes(os.urandom(70_000))
    (pg / "b").write_bytes(b"x" * 5)
    os.link(pg / "b", pg / "b-link")  # counted once, as du does
    influx = tmp_path / "influx"
    influx.mkdir()
    (influx / "f.parquet").write_bytes(b"y" * 10_000)
    cfg = DiskProbeConfig(postgres_data_dir=str(pg), influxdb_data_dir=str(influx))
    reading = asyncio.run(DiskProbe(cfg).check())

    def du(p: Path) -> int:
        return int(
            subprocess.run(
                ["du", "-s", "-B1", str(p)], capture_output=True, text=True, check=True
            ).stdout.split()[0]
        )

    assert reading.metrics["postgres_data_bytes"] == du(pg)
    assert reading.metrics["influxdb_data_bytes"] == du(influx)
    df = (
        subprocess.run(
            ["df", "-B1", "--output=size,used,avail,pcent", str(pg)],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.splitlines()[1]
        .split()
    )
    size, used = int(df[0]), int(df[1])
    # the volume changes under us (other processes write): equal to df within a few MB
    assert reading.metrics["total_volume_bytes"] == size
    assert abs(int(reading.metrics["used_volume_bytes"] or 0) - used) < 64 * 2**20
    assert abs(float(reading.metrics["used_pct"] or 0) - int(df[3].rstrip("%"))) <= 1.0
    vols = reading.details["volumes"]
    assert [v["role"] for v in vols] == ["postgres", "influxdb"] and all(v["dir_complete"] for v in vols)


def test_disk_huge_tree_is_bounded_in_time_and_near_full_is_degraded(tmp_path: Path) -> None:
    for i in range(60):
        d = tmp_path / f"d{i}"
        d.mkdir()
        for j in range(100):
            (d / f"f{j}").write_bytes(b"z")
    cfg = DiskProbeConfig(postgres_data_dir=str(tmp_path), walk_budget_s=0.001, used_warn_pct=0.01)
    t0 = time.monotonic()
    result = asyncio.run(ProbeRunner([DiskProbe(cfg)]).run_once())["disk"]
    assert time.monotonic() - t0 < scaled(1.0)
    assert result.details["volumes"][0]["dir_complete"] is False
    assert result.status == "degraded" and result.error is not None
    assert "size is a lower bound" in result.error and "% full (> 0.01 %)" in result.error


def test_disk_without_directories_is_unknown() -> None:
    result = asyncio.run(ProbeRunner([DiskProbe(DiskProbeConfig())]).run_once())["disk"]
    assert result.status == "unknown" and "no data directories configured" in (result.error or "")


@pytest.mark.parametrize("missing", ["/nonexistent/opsdash/pg"])
def test_disk_missing_directory_fails_with_its_path(missing: str) -> None:
    runner = ProbeRunner([DiskProbe(DiskProbeConfig(postgres_data_dir=missing))])
    asyncio.run(runner.run_once())
    result = asyncio.run(runner.run_once())["disk"]
    assert result.status == "down" and result.error == f"{missing}: No such file or directory"
