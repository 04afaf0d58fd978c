"""The pure fold against ground truth: known traffic in, exact figures out (no broker, no clock)."""

from __future__ import annotations

import math
import random

import pytest

from telemetry_bus.contract import encode, topics
from telemetry_bus.fold import Fold
from tests.bus.simulate import ROOT, FakeReporter, new_fold

T0 = 1_000_000.0


def run_traffic(fold: Fold, reps: list[FakeReporter], seconds: int, per_s: int, *, start: float = T0,
                drop: float = 0.0, dup: float = 0.0, seed: int = 1,
                jitter: float = 0.05) -> tuple[float, dict[str, int], int]:
    """Each reporter counts ``per_s`` messages_received per second; returns (end time, sent, dropped)."""
    rnd = random.Random(seed)
    sent = {r.instance: 0 for r in reps}
    dropped = 0
    phase = {r.instance: rnd.random() for r in reps}
    for r in reps:
        r.core.t0 = start + phase[r.instance] - 1 + r.skew_s  # each interval covers one second
        r.online(fold, start)
    now = start
    for sec in range(seconds):
        for r in reps:
            t = start + sec + phase[r.instance] + rnd.uniform(-jitter, jitter)
            r.core.inc("messages_received", per_s)
            r.core.observe("influx_write_ms", rnd.lognormvariate(1, 0.5))
            sent[r.instance] += per_s
            msg = r.take(t)
            if rnd.random() < drop:
                dropped += 1
                continue
            r.send(fold, msg, t)
            if rnd.random() < dup:
                r.send(fold, msg, t + 0.01)
        now = start + sec + 1
        fold.tick(now)
    return now, sent, dropped


def totals(fold: Fold, service: str = "ingest") -> dict[str, int]:
    return {n: i.totals.get("messages_received", 0) for n, i in fold.services[service].instances.items()}


def test_rates_and_totals_are_exact_for_steady_traffic() -> None:
    fold = new_fold(T0)
    reps = [FakeReporter("ingest", f"ingest-{i}") for i in range(3)]
    now, sent, _ = run_traffic(fold, reps, 120, 100, jitter=0.0)
    assert totals(fold) == sent
    view = fold.tick(now).view
    assert view["metrics"]["throughput"]["ingest_rate_per_sec"] == pytest.approx(300.0, rel=0.01)
    assert view["metrics"]["period"] == "last_60_seconds"
    assert view["services"]["ingest"]["instances"]["ingest-0"]["totals"]["messages_received"] == 12_000
    assert view["health"]["components"]["ingest"]["status"] == "healthy"
    assert view["health"]["components"]["ingest"]["instances_healthy"] == 3
    assert view["meta"]["completeness"]["ratio"] == 1.0
    # the series carries the per-second rate, with the same figure
    points = view["series"]["ingest_rate"]
    assert [p[1] for p in points[-30:]] == pytest.approx([300.0] * 30, rel=0.01)


def test_every_message_twice_is_counted_once() -> None:
    fold = new_fold(T0)
    reps = [FakeReporter("ingest", f"ingest-{i}") for i in range(2)]
    now, sent, _ = run_traffic(fold, reps, 40, 50, dup=1.0)
    assert totals(fold) == sent
    assert fold.duplicates == 80
    assert fold.tick(now).view["meta"]["duplicates"] == 80


def test_dropped_messages_are_repaired_from_totals_and_reported() -> None:
    fold = new_fold(T0)
    reps = [FakeReporter("ingest", f"ingest-{i}") for i in range(4)]
    now, sent, dropped = run_traffic(fold, reps, 100, 20, drop=0.1, seed=5)
    assert dropped > 10
    # the last message of each reporter must arrive for the repair to be complete: send one more
    for r in reps:
        r.send(fold, r.take(now + 0.5), now + 0.5)
    assert totals(fold) == sent
    view = fold.tick(now + 1).view
    missing = sum(i["missing_intervals"] for i in view["services"]["ingest"]["instances"].values())
    assert missing == dropped
    comp = view["meta"]["completeness"]
    assert comp["missing_intervals"] == dropped
    assert comp["ratio"] == pytest.approx(comp["received_intervals"] / (comp["received_intervals"] + dropped))


def test_late_message_after_repair_is_not_counted_twice() -> None:
    fold = new_fold(T0)
    r = FakeReporter("ingest", "ingest-0")
    r.online(fold, T0)
    r.core.inc("messages_received", 5)
    m1 = r.take(T0 + 1)
    r.core.inc("messages_received", 7)
    m2 = r.take(T0 + 2)
    r.core.inc("messages_received", 11)
    m3 = r.take(T0 + 3)
    r.send(fold, m1, T0 + 1)
    r.send(fold, m3, T0 + 3)  # m2 lost for now: repaired from totals
    assert totals(fold) == {"ingest-0": 23}
    assert fold.services["ingest"].instances["ingest-0"].missing_intervals == 1
    r.send(fold, m2, T0 + 3.5)  # arrives late after all
    assert totals(fold) == {"ingest-0": 23}
    assert fold.services["ingest"].instances["ingest-0"].missing_intervals == 0


def test_restart_is_a_new_boot_never_a_negative_or_doubled_rate() -> None:
    fold = new_fold(T0)
    r = FakeReporter("ingest", "ingest-0")
    now, sent, _ = run_traffic(fold, [r], 30, 10, jitter=0.0)
    expected = sent["ingest-0"]
    for k in range(10):
        r.restart(f"boot-{k + 2}")
        now, sent, _ = run_traffic(fold, [r], 10, 10, start=now, jitter=0.0)
        expected += sent["ingest-0"]
        view = fold.tick(now).view
        rate = view["metrics"]["throughput"]["ingest_rate_per_sec"]
        assert 0 <= rate <= 10.001
        assert all(p[1] is None or 0 <= p[1] <= 10.001 for p in view["series"]["ingest_rate"])
    inst = fold.services["ingest"].instances["ingest-0"]
    assert inst.restarts == 10
    assert inst.totals["messages_received"] == expected


def test_first_message_of_a_restarted_boot_counts_what_was_missed() -> None:
    fold = new_fold(T0)
    r = FakeReporter("ingest", "ingest-0")
    now, sent, _ = run_traffic(fold, [r], 5, 10)
    r.restart("boot-2")
    r.core.inc("messages_received", 3)
    r.take(now + 1)  # seq 1 of the new boot is lost
    r.core.inc("messages_received", 4)
    r.send(fold, r.take(now + 2), now + 2)
    inst = fold.services["ingest"].instances["ingest-0"]
    assert inst.totals["messages_received"] == sent["ingest-0"] + 7
    assert inst.missing_intervals == 1


@pytest.mark.parametrize("skew", [300.0, -300.0])
def test_skewed_clock_keeps_data_in_the_arrival_window_and_shows_the_skew(skew: float) -> None:
    fold = new_fold(T0)
    reps = [FakeReporter("ingest", "ingest-0", skew_s=skew), FakeReporter("ingest", "ingest-1")]
    now, _, _ = run_traffic(fold, reps, 90, 100)
    view = fold.tick(now).view
    assert view["metrics"]["throughput"]["ingest_rate_per_sec"] == pytest.approx(200.0, rel=0.01)
    skewed = view["services"]["ingest"]["instances"]["ingest-0"]["skew_s"]
    assert skewed == pytest.approx(skew, abs=0.2)
    assert view["services"]["ingest"]["instances"]["ingest-1"]["skew_s"] == pytest.approx(0.0, abs=0.2)


def test_outage_backlog_is_spread_over_its_duration_not_a_spike() -> None:
    fold = new_fold(T0)
    r = FakeReporter("ingest", "ingest-0")
    now, _, _ = run_traffic(fold, [r], 30, 10)
    # 20 s without a connection: the reporter folds everything into one pending interval
    for _ in range(20):
        r.core.inc("messages_received", 10)
    msg = r.take(now + 20)
    assert msg.t1 - msg.t0 == pytest.approx(20.0, abs=1.1)
    r.send(fold, msg, now + 20)
    for s in range(1, 5):
        fold.tick(now + 20 + s)
    view = fold.tick(now + 25).view
    assert max(p[1] or 0 for p in view["series"]["ingest_rate"]) <= 11.0


def test_latency_quantiles_over_the_window_with_bound() -> None:
    fold = new_fold(T0)
    r = FakeReporter("ingest", "ingest-0")
    rnd = random.Random(9)
    samples: list[float] = []
    r.online(fold, T0)
    for sec in range(50):
        for _ in range(200):
            v = rnd.lognormvariate(1.2, 0.7) if rnd.random() < 0.8 else rnd.gauss(80, 5)
            samples.append(v)
            r.core.observe("influx_write_ms", v)
        r.send(fold, r.take(T0 + sec + 0.5), T0 + sec + 0.5)
    lat = fold.tick(T0 + 50.2).view["metrics"]["latency"]
    s = sorted(samples)
    assert lat["samples"] == len(samples)
    for q, key in ((0.5, "influx_write_p50_ms"), (0.95, "influx_write_p95_ms"), (0.99, "influx_write_p99_ms")):
        ex = s[math.ceil(q * len(s)) - 1]
        # the view rounds to 3 decimals; the bound is the histogram's
        assert abs(lat[key] - ex) <= lat["relative_error"] * ex + 0.001, (key, lat[key], ex)


# -- health ------------------------------------------------------------------------------------------


def health(fold: Fold, now: float, service: str = "ingest", instance: str = "ingest-0") -> tuple[str, str]:
    view = fold.tick(now).view
    inst = view["services"][service]["instances"][instance]
    return inst["status"], inst.get("reason", "")


def test_last_will_is_down_at_once_and_clean_stop_says_shutdown() -> None:
    fold = new_fold(T0)
    a, b = FakeReporter("ingest", "ingest-0"), FakeReporter("ingest", "ingest-1")
    now, _, _ = run_traffic(fold, [a, b], 5, 1)
    a.offline(fold, now + 0.1, "lost")
    assert health(fold, now + 0.2) == ("down", "lost (Last Will)")
    view = fold.tick(now + 0.3).view
    assert view["health"]["components"]["ingest"]["status"] == "degraded"
    b.offline(fold, now + 0.4, "shutdown")
    assert health(fold, now + 0.5, instance="ingest-1") == ("down", "shutdown")
    errors = fold.tick(now + 0.6).view["errors"]["errors"]
    assert any(e["type"] == "state_change" and "ingest-0" in e["message"] for e in errors)


def test_silence_over_three_intervals_is_down() -> None:
    fold = new_fold(T0)
    r = FakeReporter("ingest", "ingest-0")
    now, _, _ = run_traffic(fold, [r], 5, 1)
    last = now - 1 + fold.services["ingest"].instances["ingest-0"].last_seen - (now - 1)
    assert health(fold, last + 2.9)[0] in ("healthy", "degraded")
    status, reason = health(fold, last + 3.1)
    assert status == "down" and reason.startswith("silent since")


def test_reported_degraded_needs_hysteresis_and_thresholds_apply() -> None:
    fold = new_fold(T0, hysteresis=3)
    r = FakeReporter("delivery", "delivery-0")
    now, _, _ = run_traffic(fold, [r], 3, 1)
    r.core.set_health("degraded", "smtp slow")
    for k in range(1, 3):
        r.send(fold, r.take(now + k - 0.5), now + k - 0.5)
        assert health(fold, now + k, "delivery", "delivery-0")[0] == "healthy"
    r.send(fold, r.take(now + 2.5), now + 2.5)
    assert health(fold, now + 3, "delivery", "delivery-0") == ("degraded", "reports degraded: smtp slow")
    r.core.set_health("ok")
    r.core.set_gauge("pending_jobs", 73)
    for k in range(4, 8):
        r.send(fold, r.take(now + k - 0.5), now + k - 0.5)
        fold.tick(now + k)
    status, reason = health(fold, now + 8, "delivery", "delivery-0")
    assert (status, reason) == ("degraded", "pending_jobs 73 > 50")
    comp = fold.tick(now + 8.1).view["health"]["components"]["delivery"]
    assert comp["pending_jobs"] == 73


def test_expected_services_are_unknown_until_seen() -> None:
    fold = new_fold(T0)
    view = fold.tick(T0 + 1).view
    for svc in ("ingest", "evaluator", "dispatcher", "delivery"):
        assert view["health"]["components"][svc]["status"] == "unknown"
        assert view["health"]["components"][svc]["reason"] == "no instance seen"
    for probe in ("postgres", "influxdb", "mqtt", "keycloak"):
        assert view["health"]["components"][probe]["status"] == "unknown"
    assert view["health"]["status"] == "unknown"


def test_probe_results_fill_health_capacity_and_aggregates() -> None:
    fold = new_fold(T0)
    pg = {"ts": T0, "status": "healthy", "latency_ms": 2.1, "period_s": 5,
          "metrics": {"connections_used": 15, "connections_max": 97, "db_size_bytes": 1310720000},
          "details": {"largest_tables": [{"name": "public.devices", "bytes": 1000}]}}
    plat = {"ts": T0, "status": "healthy", "period_s": 30, "metrics": {
        "tenants_active": 12, "tenants_suspended": 2, "tenants_deleted": 1, "tenants_total": 15,
        "devices_registered": 450, "devices_online": 380, "devices_stale": 70}}
    fold.feed(topics.probe(ROOT, "postgres"), encode(pg), T0)
    fold.feed(topics.probe(ROOT, "platform"), encode(plat), T0)
    view = fold.tick(T0 + 1).view
    comp = view["health"]["components"]["postgres"]
    assert (comp["status"], comp["connections"], comp["max_connections"], comp["latency_ms"]) == (
        "healthy", 15, 97, 2.1)
    assert view["capacity"]["postgres"]["db_size_bytes"] == 1310720000  # bytes inside (docs/view.md)
    assert view["capacity"]["postgres"]["connections_used"] == 15
    assert view["aggregates"]["tenants"] == {"active": 12, "suspended": 2, "deleted": 1, "total": 15}
    # counts stay ints (a typed client rejects 15.0 where it expects an int)
    assert all(type(v) is int for v in view["aggregates"]["tenants"].values())
    assert type(view["capacity"]["postgres"]["connections_used"]) is int
    assert type(comp["connections"]) is int and type(comp["latency_ms"]) is float
    assert view["aggregates"]["devices"]["online"] == 380
    assert "alerts" not in view["aggregates"] or "open" not in view["aggregates"]["alerts"]  # unknown
    assert "platform" not in view["health"]["components"]
    # older than 3 x period: unknown, and its figures are no longer shown as current
    view = fold.tick(T0 + 16).view
    assert view["health"]["components"]["postgres"]["status"] == "unknown"
    assert "connections_used" not in view["capacity"]["postgres"]


# -- bad input -----------------------------------------------------------------------------------


BAD = [
    (topics.metrics(ROOT, "ingest", "i-1"), b"not json", "not valid JSON"),
    (topics.metrics(ROOT, "ingest", "i-1"), b'{"boot": "b", "seq": "one"}', "Expected `int`"),
    (topics.metrics(ROOT, "ingest", "i-1"), b'{"boot": "b", "seq": 1, "gauges": {"q": NaN}}', "JSON"),
    (topics.metrics(ROOT, "ingest", "i-1"), b'{"boot": "b", "seq": 1, "gauges": {"q": 1e999}}', "out of range"),
    (topics.metrics(ROOT, "ingest", "i-1"), b'{"boot": "b", "seq": 1, "counters": {"x": -5}}', ">= 0"),
    (topics.metrics(ROOT, "ingest", "i-1"), b'{"boot": "b", "seq": 1, "counters": {"Bad Name": 1}}',
     "does not match"),
    (topics.metrics(ROOT, "ingest", "i-1"), b"{" + b" " * 300_000 + b"}", "exceeds"),
    (topics.metrics(ROOT, "ingest", "i-1"), b'{"boot":"b","seq":1,"hist":{"h":{"scale":6,"counts":[3,-1],"count":2}}}',
     "negative bucket count"),
    (f"{ROOT}/v1/svc/ingest/i-1/whatever", b"{}", "unknown topic shape"),
    (f"{ROOT}/v1/svc/INGEST/i-1/metrics", b"{}", "does not match"),
    (topics.metrics(ROOT, "ingest", "i-1"),
     b'{"boot":"b","seq":1,"hist":{"h":{"scale":6,"counts":[1,2],"count":5}}}', "histogram"),
]


@pytest.mark.parametrize(("topic", "payload", "reason"), BAD)
def test_bad_input_is_quarantined_with_reason(topic: str, payload: bytes, reason: str) -> None:
    fold = new_fold(T0)
    fold.feed(topic, payload, T0)
    assert fold.quarantined == 1
    view = fold.tick(T0 + 1).view
    entry = view["errors"]["errors"][0]
    assert entry["type"] == "quarantined" and reason in entry["message"], entry["message"]
    assert entry["topic"] == topic
    assert view["errors"]["counts"]["quarantined_1h"] == 1
    assert view["meta"]["quarantined"] == 1


def test_thousands_of_metric_names_are_capped_and_the_fold_goes_on() -> None:
    fold = new_fold(T0, max_series_per_instance=100)
    t = topics.metrics(ROOT, "ingest", "i-1")
    for k in range(3000):
        payload = encode({"boot": "b", "seq": k + 1, "counters": {f"m{k}": 1}})
        fold.feed(t, payload, T0 + k * 0.001)
    inst = fold.services["ingest"].instances["i-1"]
    assert len(inst.series) == 100
    assert fold.quarantined == 2900
    assert len(fold.tick(T0 + 5).view["errors"]["errors"]) <= 50
    # a good message still folds
    fold.feed(t, encode({"boot": "b", "seq": 5000, "counters": {"m1": 4}, "totals": {"m1": 5}}), T0 + 6)
    assert inst.totals["m1"] == 5


def test_instance_and_service_cardinality_is_bounded() -> None:
    fold = new_fold(T0, max_instances_per_service=50, max_services=10)
    for k in range(2000):
        fold.feed(topics.metrics(ROOT, "ingest", f"i-{k}"), encode({"boot": "b", "seq": 1}), T0)
        fold.feed(topics.metrics(ROOT, f"svc{k}", "i"), encode({"boot": "b", "seq": 1}), T0)
    assert len(fold.services["ingest"].instances) == 50
    assert len(fold.services) == 10
    assert fold.quarantined == 2000 - 50 + 2000 - 6  # 4 expected services + ingest + 5 new


def test_events_feed_newest_first_and_hourly_counts() -> None:
    fold = new_fold(T0)
    t = topics.events(ROOT, "delivery", "d-1")
    kinds = ["webhook_timeout"] * 12 + ["auth_failed"] * 5 + ["rate_limited"] * 4 + ["parse_error"] * 3
    for k, kind in enumerate(kinds):
        fold.feed(t, encode({"boot": "b", "seq": k + 1, "ts": T0 + k, "kind": kind, "message": f"m{k}"}),
                  T0 + k)
    fold.feed(t, encode({"boot": "b", "seq": 1, "ts": T0, "kind": "webhook_timeout"}), T0 + 30)  # dup
    view = fold.tick(T0 + 40).view
    assert view["errors"]["counts"] == {"ingest_failures_1h": 3, "delivery_failures_1h": 12,
                                        "auth_failures_1h": 5, "rate_limited_1h": 4, "quarantined_1h": 0}
    feed = [e for e in view["errors"]["errors"] if e["type"] != "state_change"]
    assert [e["message"] for e in feed[:3]] == [f"m{len(kinds) - 1}", f"m{len(kinds) - 2}", f"m{len(kinds) - 3}"]
    # an hour later they have left the window
    later = fold.tick(T0 + 40 + 3600).view
    assert later["errors"]["counts"]["delivery_failures_1h"] == 0


def test_joining_mid_boot_counts_deltas_but_a_live_boot_counts_from_its_start() -> None:
    status = encode({"state": "online", "boot": "b7", "interval_s": 1.0, "ts": T0})
    first = encode({"boot": "b7", "seq": 42, "counters": {"x": 10}, "totals": {"x": 1000}})
    # the aggregator (re)started: the status comes from the broker's retained store
    late = new_fold(T0)
    late.feed(topics.status(ROOT, "ingest", "a"), status, T0, retained=True)
    late.feed(topics.metrics(ROOT, "ingest", "a"), first, T0 + 1)
    inst = late.services["ingest"].instances["a"]
    assert (inst.totals["x"], inst.missing_intervals) == (10, 0)
    # a live status opens a new boot: seq 1..41 were lost, the totals repair them
    live = new_fold(T0)
    live.feed(topics.status(ROOT, "ingest", "a"), status, T0, retained=False)
    live.feed(topics.metrics(ROOT, "ingest", "a"), first, T0 + 1)
    inst = live.services["ingest"].instances["a"]
    assert (inst.totals["x"], inst.missing_intervals) == (1000, 41)


def test_early_ticks_apply_immediate_changes_but_hysteresis_counts_full_ticks() -> None:
    fold = new_fold(T0, hysteresis=2)
    a, b = FakeReporter("ingest", "a"), FakeReporter("ingest", "b")
    now, _, _ = run_traffic(fold, [a, b], 3, 1)
    b.core.set_health("degraded", "slow")
    for k in range(6):  # six early ticks with news: a reported degradation does not pass hysteresis
        b.send(fold, b.take(now + 0.1 * k), now + 0.1 * k)
        fold.tick(now + 0.1 * k + 0.05, full=False)
    assert fold.services["ingest"].instances["b"].state.state == "healthy"
    a.offline(fold, now + 0.7, "lost")  # a Last Will is immediate, early tick or not
    view = fold.tick(now + 0.75, full=False).view
    assert view["services"]["ingest"]["instances"]["a"]["status"] == "down"
    fold.tick(now + 1.0)
    assert fold.tick(now + 2.0).view["services"]["ingest"]["instances"]["b"]["status"] == "degraded"
