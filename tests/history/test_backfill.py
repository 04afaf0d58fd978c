"""Restart without amnesia: after kill -9 and restart of the aggregator its series hold the last
15 minutes again (from history), with the restart as a gap (null), not zeros."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import asyncpg
import pytest

from history.backfill import QS, points_from_rows
from history.recorder import RecorderService
from opsdash.config import load_config
from opsdash.wiring import build_aggregator
from telemetry_bus.aio import cancel_and_wait
from telemetry_bus.histogram import ExpHistogram
from telemetry_bus.reporter import Reporter
from tests.conftest import eventually
from tests.history.conftest import start_stack
from tests.support.servers import Mosquitto, PrivatePostgres, scaled


def test_sliding_window_quantiles_equal_a_merge_of_each_window() -> None:
    rnd = random.Random(3)
    hists: dict[int, ExpHistogram] = {}
    for t in range(1000, 1200):
        if 1100 <= t < 1110:
            continue  # a hole
        h = ExpHistogram(scale=6 if t % 3 else 5)
        for _ in range(rnd.randint(1, 30)):
            h.record(rnd.lognormvariate(1.0, 1.0))
        hists[t] = h
    out = points_from_rows(1200.5, 150, 60, {"ingest_rate": {1100: 5.0}}, hists)
    assert out["ingest_rate"][0] == [1051.0, None]
    assert [1101.0, 5.0] in out["ingest_rate"]
    for q, p in QS:
        for t, v in out[q]:
            window = [hists[s] for s in range(int(t) - 59, int(t) + 1) if s in hists]
            merged = ExpHistogram(scale=5, max_buckets=4096)
            for h in window:
                merged.merge(h)
            want = merged.quantile(p)
            assert v == (None if want is None else round(want, 3)), (q, t)


def _agg(url: str, dsn: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OPSDASH_MQTT_URL": url, "OPSDASH_HISTORY_URL": dsn, "OPSDASH_AGGREGATOR__ID": "bf"}
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "opsdash.cli", "aggregator"], env=env, stdout=fh,
                                stderr=fh, start_new_session=True)


async def _snapshot(m: Mosquitto, after: float, log: Path) -> dict:  # type: ignore[type-arg]
    """The first snapshot of the new aggregator that holds the backfill (it follows the backfill)."""
    seen = 0
    try:
        async with aiomqtt.Client(m.host, m.port) as c:
            await c.subscribe("$ops/v1/view/snapshot", qos=1)
            async with asyncio.timeout(scaled(40)):
                async for msg in c.messages:
                    seen += 1
                    snap = json.loads(msg.payload)  # type: ignore[arg-type]
                    state = snap["state"]
                    if (snap["ts"] > after and state["meta"]["started_at"] > after - 1
                            and any(v for _t, v in state["series"].get("ingest_rate", [])
                                    if _t < after - 5)):
                        return state  # type: ignore[no-any-return]
    except TimeoutError:
        pass
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
    raise AssertionError(f"no snapshot with the backfilled series ({seen} snapshots seen); the new "
                         f"aggregator's log ends:\n{tail}")


async def test_aggregator_kill_9_restart_backfills_series(mosquitto: Mosquitto, database_url: str,
                                                         tmp_path: Path) -> None:
    config = load_config(env={"OPSDASH_MQTT_URL": mosquitto.url, "OPSDASH_HISTORY_URL": database_url})
    rec = RecorderService(config)
    rec_task = asyncio.create_task(rec.run())
    agg = _agg(mosquitto.url, database_url, tmp_path / "agg.log")
    reps = [Reporter("ingest", f"bf-{i}", mqtt_url=mosquitto.url) for i in range(2)]
    try:
        for r in reps:
            await r.start()
        started = time.time()
        loop = asyncio.get_running_loop()
        end = loop.time() + 14
        while loop.time() < end:
            for r in reps:
                r.inc("messages_received", 10)
                r.observe("influx_write_ms", 5.0)
            await asyncio.sleep(0.1)
        # the traffic's seconds in history (rows_written also counts the view stream's rows, which can
        # be there long before the first per-second frame on a loaded machine)
        conn = await asyncpg.connect(database_url)
        try:
            async def framed() -> bool:
                n = await conn.fetchval("SELECT count(*) FROM frames WHERE ts >= to_timestamp($1)", started)
                return bool(n and n >= 8)
            await eventually(framed, timeout=30, what="8 seconds of the traffic in history")
        finally:
            await conn.close()
        agg.send_signal(signal.SIGKILL)
        agg.wait(5)
        killed = time.time()
        await asyncio.sleep(4)
        restarted = time.time()
        agg = _agg(mosquitto.url, database_url, tmp_path / "agg2.log")
        state = await _snapshot(mosquitto, restarted, tmp_path / "agg2.log")
        series = state["series"]["ingest_rate"]
        before = [(t, v) for t, v in series if t < killed - 3]
        # the seconds before the kill are back, with their traffic (2 x 10 per 0.1 s = ~200/s)
        assert sum(1 for t, v in before if v and v > 100) >= 5, series[:40]
        assert before[0][0] >= restarted - 901 and started - 2 <= before[-1][0]
        # the restart is a gap: every second from the kill to the restart is null, never 0
        gap = [v for t, v in series if killed + 1 <= t <= restarted]
        assert gap and all(v is None for v in gap), gap
        lat = [v for t, v in state["series"]["write_p99"] if t < killed - 3 and v is not None]
        assert lat and all(abs(v - 5.0) <= 5.0 * 0.006 for v in lat)
    finally:
        for r in reps:
            await r.stop()
        if agg.poll() is None:
            agg.send_signal(signal.SIGTERM)
            agg.wait(10)
        await cancel_and_wait([rec_task])


async def test_backfill_waits_for_a_database_that_comes_up_after_the_aggregator(
        mosquitto: Mosquitto, private_pg: PrivatePostgres, private_dsn: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """docker-compose may start the aggregator before PostgreSQL answers: the backfill is tried again
    and the series still hold what was recorded before."""
    caplog.set_level(logging.INFO, logger="opsdash")
    s = await start_stack(mosquitto.url, private_dsn)
    rep = Reporter("ingest", "bf-late", mqtt_url=mosquitto.url)
    await rep.start()
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 6
        while loop.time() < end:
            rep.inc("messages_received", 10)
            await asyncio.sleep(0.1)
        await eventually(lambda: s.recorder.writer.rows_written > 4, timeout=15, what="history written")
        await asyncio.sleep(scaled(2))  # the last seconds on their way through the recorder
    finally:
        await rep.stop()
        await cancel_and_wait(s.tasks)
    # ground truth: what the first aggregator showed, second by second
    shown = {t: v for t, v in s.aggregator.fold.series["ingest_rate"] if v is not None}
    await asyncio.to_thread(private_pg.stop)
    caplog.clear()
    config = load_config(env={"OPSDASH_MQTT_URL": mosquitto.url, "OPSDASH_HISTORY_URL": private_dsn,
                              "OPSDASH_AGGREGATOR__ID": "bf-late"})
    agg = build_aggregator(config)
    task = asyncio.create_task(agg.run())
    try:
        await eventually(lambda: "trying again" in caplog.text, timeout=20, what="a failed backfill, retried")
        assert "series backfilled" not in caplog.text
        await asyncio.to_thread(private_pg.start)
        await eventually(lambda: "series backfilled" in caplog.text, timeout=30, what="the backfill")
        back = {t: v for t, v in agg.fold.series["ingest_rate"] if v is not None and t in shown}
        # every second read back is the one the first aggregator showed: history keeps 7 significant
        # digits (float4), so a value that was x.xxx5 may round to the next thousandth either way
        assert sum(1 for v in back.values() if v > 0) >= 3, (back, shown)
        assert all(abs(v - shown[t]) <= 0.001 + 1e-6 * abs(shown[t]) for t, v in back.items()), (back, shown)
    finally:
        await cancel_and_wait([task])
