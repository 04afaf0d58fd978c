"""The forecast's six hours from the recorder's database (a real PostgreSQL, history written by
history/generate.py the way the demo writes its past)."""

from __future__ import annotations

import itertools
import math
import time

import asyncpg

from alerts.config import AlertsConfig
from alerts.engine import Engine, compile_rules
from alerts.history import SERIES, disk_samples_from_history
from history.generate import Model, SeriesSpec, past
from history.schema import migrate


async def test_disk_samples_from_history_one_a_minute_over_six_hours(database_url: str) -> None:
    now = float(int(time.time()) // 60 * 60)
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    model = Model(series=(SeriesSpec(SERIES, 60.0, "capacity", shape="grow"),))
    await past(database_url, model, now - 7 * 3600, now)
    samples = await disk_samples_from_history(database_url, now)
    assert 350 <= len(samples) <= 361
    ts = [t for t, _ in samples]
    assert ts == sorted(ts) and all(b - a == 60 for a, b in itertools.pairwise(ts))
    assert ts[0] >= now - 6 * 3600 - 60
    assert all(math.isfinite(v) and v > 0 for _, v in samples)  # (the generator's "grow" is not a %)
    eng = Engine({k: v for k, v in compile_rules(AlertsConfig()).items() if k == "disk_full_forecast"})
    eng.seed_disk(samples)
    assert len(eng.disk) == len(samples)
