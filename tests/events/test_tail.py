"""The live tail's pure hub (gateway/events_tail.py): filters like the API, rate cap with counted drops."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.events_tail import TailHub, decode_tail_filter, event_from_bus, event_from_feed
from telemetry_bus.contract import Event


def ev(seq: int, kind: str = "webhook_timeout", severity: str = "error", message: str = "",
       boot: str = "b1", ts: float = 1_795_939_200.25, **attrs: str) -> Event:
    return Event(boot=boot, seq=seq, ts=ts, kind=kind, severity=severity,  # type: ignore[arg-type]
                 message=message, attrs=attrs)


def frames(out: list[tuple[str, bytes]]) -> dict[str, list[dict[str, Any]]]:
    got: dict[str, list[dict[str, Any]]] = {}
    for key, data in out:
        msg = json.loads(data)
        assert msg["type"] == "events"
        got.setdefault(key, []).extend(msg["events"])
    return got


def test_each_client_gets_what_its_filter_matches() -> None:
    hub: TailHub[str] = TailHub()
    hub.subscribe("all", decode_tail_filter(None), 0)
    hub.subscribe("delivery-errors", decode_tail_filter({"service": "delivery", "severity": "error"}), 0)
    hub.subscribe("acme", decode_tail_filter({"q": "ACME, timed-out"}), 0)
    hub.subscribe("logs-of-i2", decode_tail_filter({"type": ["log"], "instance": ["ingest-2"]}), 0)
    out = hub.offer_bus_event("delivery", "delivery-1", ev(1, message="POST https://hooks.acme.example "
                                                                      "timed out"), 1.0)
    assert sorted(frames(out)) == ["acme", "all", "delivery-errors"]
    out = hub.offer_bus_event("delivery", "delivery-1", ev(2, severity="warning", message="timed out"), 1.0)
    assert sorted(frames(out)) == ["all"]
    out = hub.offer_bus_event("ingest", "ingest-2", ev(1, kind="log", severity="critical",
                                                       message="out of memory", tenant="acme"), 1.0)
    assert sorted(frames(out)) == ["all", "logs-of-i2"]
    e = frames(out)["all"][0]
    assert e == {"id": None, "ts": 1_795_939_200.25, "timestamp": "2026-11-29T08:00:00.250Z",
                 "service": "ingest", "instance": "ingest-2", "type": "log", "severity": "critical",
                 "message": "out of memory", "attrs": {"tenant": "acme"}}


def test_a_duplicate_is_sent_once_and_a_new_boot_is_not_a_duplicate() -> None:
    hub: TailHub[str] = TailHub()
    hub.subscribe("c", decode_tail_filter(None), 0)
    assert len(hub.offer_bus_event("ingest", "i", ev(5), 1)) == 1
    assert hub.offer_bus_event("ingest", "i", ev(5), 1) == []
    assert len(hub.offer_bus_event("ingest", "i", ev(5, boot="b2"), 1)) == 1
    assert hub.duplicates == 1


def test_a_flood_is_capped_per_client_and_the_drops_are_reported() -> None:
    hub: TailHub[str] = TailHub(rate_per_s=10, burst=20)
    hub.subscribe("c", decode_tail_filter(None), 0.0)
    sent, reported = 0, 0
    for k in range(1000):  # 1,000 events in one second
        for _, data in hub.offer_bus_event("ingest", "i", ev(k + 1), k / 1000):
            msg = json.loads(data)
            sent += len(msg["events"])
            reported += msg["dropped"]
    assert 20 <= sent <= 30  # the burst, then 10/s
    assert hub.dropped_total == 1000 - sent
    [(_, data)] = hub.flush_drops(1.0)
    reported += json.loads(data)["dropped"]
    assert json.loads(data)["events"] == []
    assert reported == 1000 - sent  # every drop is told to the client exactly once
    assert hub.flush_drops(1.1) == []
    [(_, data)] = hub.offer_bus_event("ingest", "i", ev(5000), 3.0)  # after the flood: at once
    assert json.loads(data)["dropped"] == 0


@pytest.mark.parametrize(("raw", "word"), [
    ({"service": 5}, "service"), ({"severity": "fatal"}, "severity"),
    ({"q": "!!!"}, "letter or digit"), ({"colour": "red"}, "unknown field"),
    ({"service": ["Bad Name"]}, "service"), ({"q": "x" * 5000}, "q"), ("delivery", "Expected `object`"),
])
def test_bad_filters_are_refused_with_a_reason(raw: object, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        decode_tail_filter(raw)


def test_aggregator_feed_entries_are_tailed_and_service_events_are_not_taken_twice() -> None:
    quarantine = {"timestamp": "x", "ts": 10.5, "service": "opsdash-aggregator", "instance": None,
                  "type": "quarantined", "severity": "warning", "message": "bad json",
                  "topic": "$ops/v1/svc/x/y/metrics"}
    e = event_from_feed(quarantine)
    assert e is not None and e["attrs"] == {"topic": "$ops/v1/svc/x/y/metrics"} and e["instance"] is None
    assert event_from_feed({**quarantine, "reporter_ts": 10.0}) is None  # it came from the bus already
    assert event_from_feed({"ts": "soon"}) is None
    assert event_from_bus("a", "b", ev(1))["id"] is None
