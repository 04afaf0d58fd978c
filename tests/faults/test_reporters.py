"""Reporter faults: restarted ten times; clocks 5 minutes ahead and behind."""

from __future__ import annotations

import math
import time
from typing import Any

import msgspec

from telemetry_bus.reporter import Reporter
from telemetry_bus.service import AggregatorService
from tests.conftest import eventually
from tests.faults.conftest import StartAggregator
from tests.faults.helpers import assert_finite, count_load, instance_totals, strict_loads
from tests.support.servers import Mosquitto

PER_TICK, TICK = 5, 0.05  # 100 messages_received per second per reporter


def view_of(agg: AggregatorService) -> dict[str, Any]:
    assert agg.last is not None
    view: dict[str, Any] = strict_loads(msgspec.json.encode(agg.last.view))
    assert_finite(view)
    return view


def rate_points(view: dict[str, Any], lo: float, hi: float) -> list[float]:
    """ingest_rate series values whose second lies within [lo, hi] (aggregator clock)."""
    return [v for ts, v in view["series"]["ingest_rate"] if lo <= ts <= hi and v is not None]


async def test_reporter_restarted_ten_times(mosquitto: Mosquitto, start_aggregator: StartAggregator) -> None:
    agg, _ = await start_aggregator("restart-agg")
    sent: dict[str, int] = {}
    boots = []
    began = time.time()
    for _k in range(11):  # the first run and ten restarts, each a new boot of the same instance
        rep = Reporter("ingest", "flappy", mqtt_url=mosquitto.url, interval_s=0.2)
        boots.append(rep.boot)
        await rep.start()
        await rep.wait_connected()
        await count_load([rep], 0.8, per_tick=PER_TICK, tick=TICK, sent=sent, hist=False)
        await rep.stop()
    ended = time.time()
    assert len(set(boots)) == 11
    await eventually(lambda: instance_totals(agg.fold, "ingest") == sent, 10, what="totals == sent")
    await eventually(lambda: agg.last is not None and agg.last.ts > ended + 3.5, 10, what="rates settled")
    view = view_of(agg)
    inst = view["services"]["ingest"]["instances"]["flappy"]
    assert inst["restarts"] == 10
    assert inst["boot"] == boots[-1]
    assert inst["totals"]["messages_received"] == sent["flappy"]
    assert inst["missing_intervals"] == 0
    # Rates: never negative, never doubled by a restart. The reporter counts at ~100/s while it runs
    # and is silent between runs, so no second can hold much more than 100.
    rate = PER_TICK / TICK
    points = rate_points(view, math.floor(began), math.ceil(ended) + 1)
    assert points and min(points) >= 0
    assert max(points) < 1.6 * rate, points
    assert all(v >= 0 for _, v in view["series"]["ingest_rate"] if v is not None)
    overall = view["metrics"]["throughput"]["ingest_rate_per_sec"]
    assert 0 <= overall < 1.6 * rate
    # every counted message is in the per-second series exactly once (spread over the seconds)
    assert abs(sum(points) - sent["flappy"]) < 1.0
    print(f"\nreporter restarted ten times: {inst['restarts']} restarts (11 boots) seen; totals "
          f"{inst['totals']['messages_received']:,} == sent {sent['flappy']:,}; per-second rate "
          f"min {min(points):.1f} max {max(points):.1f} /s (counting at {rate:.0f}/s), "
          f"60 s rate {overall} /s")


async def test_clock_skew_five_minutes_ahead_and_behind(mosquitto: Mosquitto,
                                                        start_aggregator: StartAggregator) -> None:
    agg, _ = await start_aggregator("skew-agg")
    ahead = Reporter("ingest", "ahead", mqtt_url=mosquitto.url, interval_s=0.25,
                     clock=lambda: time.time() + 300)
    behind = Reporter("ingest", "behind", mqtt_url=mosquitto.url, interval_s=0.25,
                      clock=lambda: time.time() - 300)
    for r in (ahead, behind):
        await r.start()
        await r.wait_connected()
    began = time.time()
    counted: list[tuple[float, int]] = []  # (when, how many) of every tick: what really went out
    sent = await count_load([ahead, behind], 8.0, per_tick=PER_TICK, tick=TICK, log=counted)
    ended = time.time()
    await eventually(lambda: instance_totals(agg.fold, "ingest") == sent, 10, what="totals == sent")
    await eventually(lambda: agg.last is not None and agg.last.ts > ended + 3.5, 10, what="rates settled")
    view = view_of(agg)
    for r in (ahead, behind):
        await r.stop()
    insts = view["services"]["ingest"]["instances"]
    assert abs(insts["ahead"]["skew_s"] - 300) < 2, insts["ahead"]["skew_s"]
    assert abs(insts["behind"]["skew_s"] + 300) < 2, insts["behind"]["skew_s"]
    # No data in the wrong window: everything counted lies in the seconds the reporters ran (on the
    # aggregator's clock), none 5 minutes off, so the per-second points add up to what was sent.
    series = view["series"]["ingest_rate"]
    inside = rate_points(view, math.floor(began), math.ceil(ended) + 1)
    outside = [v for ts, v in series if not math.floor(began) <= ts <= math.ceil(ended) + 1 and v]
    assert outside == []
    assert abs(sum(inside) - sum(sent.values())) < 1.0
    # Inside the run the per-second rate is what was counted in those seconds: 200/s when the loop
    # keeps the 50 ms tick, less on a loaded machine, so compare with the counting itself. A reporter's
    # data 5 minutes off would leave about half of it (one of two reporters) in these seconds.
    both = 2 * PER_TICK / TICK  # 200/s
    lo, hi = math.floor(began) + 2, math.floor(ended) - 1
    full = [v for ts, v in series if lo <= ts <= hi and v is not None]
    mean = sum(full) / len(full)
    truth = sum(n for t, n in counted if lo <= t < hi + 1) / (hi + 1 - lo)
    assert abs(mean - truth) < 0.2 * truth, (mean, truth, full)
    print(f"\nclock skew: skew_s ahead {insts['ahead']['skew_s']} s, behind {insts['behind']['skew_s']} s; "
          f"per-second ingest rate over the run mean {mean:.1f}/s (counted {truth:.1f}/s, aimed at {both:.0f}/s), "
          f"0 points outside the run, totals {sum(sent.values()):,} == sent")
