"""Duplicated and lost metrics messages on the wire (real reporters, real broker, a proxy between).

Both use :class:`tests.faults.helpers.MqttProxy` between each reporter and mosquitto, which parses the
MQTT packets the reporter sends: a second publish of every metrics message (new packet id), or 10 % of
the metrics PUBLISH packets dropped (the client gets the PUBACK, the broker never sees the message).
A proxy rather than publishing twice from the test: the real :class:`Reporter` runs unchanged, and the
fault happens where it happens in production, between the reporter's socket and the broker.
"""

from __future__ import annotations

import asyncio

import msgspec

from telemetry_bus.reporter import Reporter
from tests.conftest import eventually
from tests.faults.conftest import StartAggregator
from tests.faults.helpers import MqttProxy, count_load, instance_totals, strict_loads
from tests.support.servers import Mosquitto


async def _reporters_through(proxy: MqttProxy, n: int, name: str) -> list[Reporter]:
    reps = [Reporter("ingest", f"{name}-{i}", mqtt_url=proxy.url, interval_s=0.2) for i in range(n)]
    for r in reps:
        await r.start()
        await r.wait_connected()
    return reps


async def test_every_metrics_message_delivered_twice(mosquitto: Mosquitto,
                                                     start_aggregator: StartAggregator) -> None:
    agg, _ = await start_aggregator("dup-agg")
    proxy = await MqttProxy(mosquitto.host, mosquitto.port, duplicate=True).start()
    try:
        reps = await _reporters_through(proxy, 3, "dup")
        sent = await count_load(reps, 6.0)
        for r in reps:
            await r.stop()
        await eventually(lambda: instance_totals(agg.fold, "ingest") == sent, 10, what="totals == sent")
        await eventually(lambda: agg.fold.duplicates == proxy.duplicated, 5, what="every copy counted")
        await eventually(lambda: agg.last is not None
                         and agg.last.view["meta"]["duplicates"] == proxy.duplicated, 3, what="in the view")
    finally:
        await proxy.stop()
    assert agg.last is not None
    view = strict_loads(msgspec.json.encode(agg.last.view))
    for r in reps:
        inst = view["services"]["ingest"]["instances"][r.instance]
        assert inst["totals"]["messages_received"] == sent[r.instance]
        assert inst["missing_intervals"] == 0
    assert proxy.duplicated == proxy.forwarded == sum(r.sent_metrics for r in reps)
    print(f"\ndelivered twice: {proxy.duplicated} metrics messages each sent twice; duplicates counted "
          f"{agg.fold.duplicates}; totals {sum(sent.values()):,} == sent {sum(sent.values()):,}")


async def test_ten_percent_of_metrics_dropped_totals_exact_and_loss_shown(
        mosquitto: Mosquitto, start_aggregator: StartAggregator) -> None:
    agg, _ = await start_aggregator("drop-agg")
    proxy = await MqttProxy(mosquitto.host, mosquitto.port, drop_ratio=0.10, seed=11).start()
    try:
        reps = await _reporters_through(proxy, 3, "lossy")
        sent = await count_load(reps, 8.0)
        proxy.active = False  # the last message of each reporter must arrive, or nothing can repair it
        await asyncio.sleep(0.5)
        sent = await count_load(reps, 0.5, sent=sent)
        for r in reps:
            await r.stop()
        await eventually(lambda: instance_totals(agg.fold, "ingest") == sent, 10, what="totals == sent")
        missing = sum(i.missing_intervals for i in agg.fold.services["ingest"].instances.values())
        sent_msgs = sum(r.sent_metrics for r in reps)
        await eventually(lambda: agg.last is not None and agg.last.view["meta"]["completeness"] == {
            "missing_intervals": proxy.dropped, "received_intervals": sent_msgs - proxy.dropped,
            "ratio": round((sent_msgs - proxy.dropped) / sent_msgs, 6)}, 3, what="the loss in the view")
    finally:
        await proxy.stop()
    assert agg.last is not None
    meta = strict_loads(msgspec.json.encode(agg.last.view))["meta"]
    comp = meta["completeness"]
    assert missing == proxy.dropped > 0
    assert comp["received_intervals"] == sent_msgs - proxy.dropped
    assert comp["ratio"] == round((sent_msgs - proxy.dropped) / sent_msgs, 6)
    assert comp["ratio"] < 1
    assert meta["duplicates"] == 0
    print(f"\n10 % dropped: {proxy.dropped} of {sent_msgs} metrics messages dropped on the wire; "
          f"totals {sum(sent.values()):,} == sent (lost 0, repaired from totals); completeness ratio "
          f"{comp['ratio']} ({comp['missing_intervals']} missing intervals)")
