"""The simulator's model: seeded, and shaped like the issue asks (pure: no broker, simulated time)."""

from __future__ import annotations

import statistics

from opsdash.simulator import InstanceModel, SimSettings, backlog_level, daily_factor, parse_instances


def run(model: InstanceModel, t0: float, seconds: float, dt: float = 0.25) -> list[tuple]:  # type: ignore[type-arg]
    out = []
    t = t0
    while t < t0 + seconds:
        out.append(model.step(t, dt))
        t += dt
    return out


def test_same_seed_same_platform_other_seed_other_platform() -> None:
    s = SimSettings(seed=42, t0=1000.0)
    a = run(InstanceModel(s, "ingest", 1), 1000.0, 20)
    b = run(InstanceModel(s, "ingest", 1), 1000.0, 20)
    c = run(InstanceModel(SimSettings(seed=43, t0=1000.0), "ingest", 1), 1000.0, 20)
    assert a == b
    assert a != c


def test_ingest_rates_latencies_and_errors_look_real() -> None:
    s = SimSettings(seed=1, t0=0.0, instances={"ingest": 3}, error_scale=1.0)
    steps = [run(InstanceModel(s, "ingest", i), 0.0, 120) for i in (1, 2, 3)]
    received = sum(st[0]["messages_received"] for inst in steps for st in inst)
    expected = sum(daily_factor(k * 0.25, s) for k in range(480)) * 0.25 * s.ingest_rate
    assert abs(received - expected) / expected < 0.1  # the three instances share the platform's rate
    lat = sorted(v for inst in steps for st in inst for v in st[1]["influx_write_ms"])
    p50, p95, p99 = (lat[int(len(lat) * q)] for q in (0.5, 0.95, 0.99))
    assert 2.0 < p50 < 4.5 and p95 > 1.8 * p50 and p99 > p95  # lognormal with a tail
    kinds = {e[0] for inst in steps for st in inst for e in st[3]}
    assert {"parse_error", "auth_failed", "rate_limited"} <= kinds
    written = sum(st[0]["messages_written"] for inst in steps for st in inst)
    assert written < received


def test_a_day_has_a_quiet_night_and_a_busy_afternoon() -> None:
    s = SimSettings(seed=0, t0=0.0, day_s=1200.0)
    values = [daily_factor(t, s) for t in range(0, 1200, 5)]
    assert max(values) > 2.5 * min(values)
    assert 0.7 < statistics.fmean(values) < 1.3


def test_delivery_backlog_builds_past_degraded_and_drains() -> None:
    s = SimSettings(seed=3, t0=0.0, first_backlog_s=10.0, backlog_s=60.0, backlog_every_s=300.0,
                    instances={"delivery": 2})
    assert backlog_level(5.0, s) == 0.0 and backlog_level(10 + 0.55 * 60, s) > 0.99
    models = [InstanceModel(s, "delivery", i) for i in (1, 2)]
    pending: list[float] = []
    t = 0.0
    while t < 120:
        pending.append(sum(m.step(t, 0.25)[2]["pending_jobs"] for m in models))
        t += 0.25
    peak = max(pending)
    assert peak > 2 * 50  # both instances past the degraded threshold (50 each)
    assert pending[-1] < 10  # drained after the episode
    assert pending.index(peak) < len(pending) - 40


def test_instances_option() -> None:
    assert parse_instances("ingest=5, delivery=1") == {"ingest": 5, "evaluator": 2, "dispatcher": 2,
                                                        "delivery": 1}
