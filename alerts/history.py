"""The forecast's memory from history: the last six hours of ``capacity:disk.used_pct`` (docs/alerts.md).

The aggregator keeps the forecast's samples on the bus (``alertstate/disk``); with history on it also
reads them from the recorder's database at start, so a first start, or one after the retained message
was lost, forecasts at once instead of after 30 minutes.
"""

from __future__ import annotations

from alerts.engine import DISK_SAMPLE_S, DISK_WINDOW_S

__all__ = ["disk_samples_from_history"]

SERIES = "capacity:disk.used_pct"


async def disk_samples_from_history(dsn: str, now: float) -> list[tuple[float, float]]:
    """One mean per minute over the last six hours (points without data left out)."""
    import asyncpg

    from history.query import HistoryReader

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        body = await HistoryReader(pool).series([SERIES], now - DISK_WINDOW_S, now, int(DISK_SAMPLE_S))
    finally:
        await pool.close()
    points = (body.get("series") or {}).get(SERIES) or []
    return [(float(t), float(v)) for t, v in points if v is not None]
