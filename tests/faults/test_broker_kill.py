"""Broker ``kill -9`` five times under load: aggregated totals == sent totals, nothing lost.

Several in-process reporters (two services, interval 0.5 s) count at a steady rate for ~40 s while the
private mosquitto (deploy/mosquitto.conf: persistence, autosave 5 s, max_queued_messages 200000) is
killed with SIGKILL five times and restarted after a short outage. The reporters reconnect by
themselves (keeping the outage in one pending interval, re-sending an unacked message with the same
seq); the aggregator reconnects with its persistent session. A kill -9 loses what mosquitto held since
its last autosave, so messages can be lost between broker and aggregator: the totals carried by the
next message repair them (counted as missing intervals), duplicates (re-sent messages) fold once.
"""

from __future__ import annotations

import os
import time

import msgspec

from telemetry_bus.reporter import Reporter
from tests.conftest import eventually
from tests.faults.conftest import StartAggregator
from tests.faults.helpers import count_load, instance_totals, strict_loads
from tests.support.servers import Mosquitto

LOAD_S = float(os.environ.get("OPSDASH_FAULT_LOAD_S", "40"))
KILLS = 5


async def test_broker_kill_9_five_times_under_load_loses_nothing(
        mosquitto: Mosquitto, start_aggregator: StartAggregator) -> None:
    agg, _ = await start_aggregator("kill-agg")
    reps = [Reporter(svc, f"{svc}-{i}", mqtt_url=mosquitto.url, interval_s=0.5,
                     backoff_initial_s=0.05, backoff_max_s=0.5)
            for svc in ("ingest", "delivery") for i in range(3)]
    for r in reps:
        await r.start()
        await r.wait_connected()
    sent: dict[str, int] = {}
    started = time.monotonic()
    segment = LOAD_S / (KILLS + 1)
    outages = []
    for _k in range(KILLS):
        await count_load(reps, segment, sent=sent)
        mosquitto.kill()
        t0 = time.monotonic()
        await count_load(reps, 0.6, sent=sent)  # counted while the broker is dead
        mosquitto.start()
        outages.append(time.monotonic() - t0)
    await count_load(reps, segment, sent=sent)
    load_s = time.monotonic() - started
    for r in reps:
        await r.stop()  # the last interval and a clean offline status

    def folded() -> dict[str, int]:
        return {**instance_totals(agg.fold, "ingest"), **instance_totals(agg.fold, "delivery")}

    await eventually(lambda: folded() == sent, 20, what="aggregated totals == sent totals")
    total = sum(sent.values())
    lost = total - sum(folded().values())
    missing = sum(i.missing_intervals for s in agg.fold.services.values() for i in s.instances.values())
    await eventually(lambda: agg.last is not None and all(
        agg.last.view["services"][r.service]["instances"][r.instance]["totals"]["messages_received"]
        == sent[r.instance] for r in reps), 5, what="the view shows the totals")
    assert agg.last is not None
    view = strict_loads(msgspec.json.encode(agg.last.view))
    assert view["meta"]["duplicates"] == agg.fold.duplicates
    assert all(r.connects >= 2 for r in reps), [r.connects for r in reps]
    assert lost == 0
    print(f"\nbroker kill -9 x{KILLS} in {load_s:.0f} s of load from {len(reps)} reporters "
          f"(outages {', '.join(f'{o:.1f}' for o in outages)} s): lost {lost} of {total:,}; "
          f"duplicates folded once: {agg.fold.duplicates}; metrics messages missing at the aggregator "
          f"(repaired from totals): {missing}; reporter reconnects: {sum(r.connects - 1 for r in reps)}")
