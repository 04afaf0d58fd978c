"""Known sizes and counts through probe -> bus -> fold -> REST and /metrics: bytes stay exact, the seed's
GB / MB fields are decimal (10^9 / 10^6 bytes), counts stay ints, measurements stay floats."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from gateway.rest import prometheus_text, section
from probes.core import ProbeState, Reading, judge
from telemetry_bus.contract import decode_probe, encode, topics
from tests.bus.simulate import ROOT, new_fold

T0 = 1_800_000_000.0
TOTAL = 1_234_567_890_123  # bytes: 1.234567890123 TB, 1149.78 GiB
USED = 987_654_321_000
PG_DATA = 12_500_000_000
DB = 1_250_000_000


def _through_the_bus(target: str, reading: Reading, fold_now: float) -> dict[str, object]:
    result = judge(reading, ProbeState(), now=T0, period_s=5.0, latency_budget_ms=1000)
    wire = encode(result)
    assert decode_probe(wire) == result  # what the aggregator decodes is what the probe sent
    fold = new_fold(T0)
    fold.feed(topics.probe(ROOT, target), wire, fold_now)
    return fold.tick(fold_now + 1).view


def test_a_known_size_round_trips_exactly_to_metrics_and_decimally_to_rest() -> None:
    view = _through_the_bus("disk", Reading(latency_ms=1.0, metrics={
        "total_volume_bytes": TOTAL, "used_volume_bytes": USED, "postgres_data_bytes": PG_DATA,
        "influxdb_data_bytes": None, "used_pct": 80.0}), T0)
    disk = view["capacity"]["disk"]  # type: ignore[index]
    assert disk["total_volume_bytes"] == TOTAL and type(disk["total_volume_bytes"]) is int
    rest = section(view, "capacity")  # type: ignore[arg-type]
    assert rest["disk"]["total_volume_gb"] == 1234.568  # decimal GB, as the seed's field says
    assert rest["disk"]["used_volume_gb"] == 987.654
    assert rest["disk"]["postgres_data_gb"] == 12.5
    assert rest["disk"]["influxdb_data_gb"] is None  # unknown stays unknown, never 0
    assert rest["disk"]["total_volume_bytes"] == TOTAL  # the exact figure rides beside it
    text = prometheus_text(view, {})  # type: ignore[arg-type]
    assert f'opsdash_disk_bytes{{volume="total_volume"}} {TOTAL}\n' in text
    assert f'opsdash_disk_bytes{{volume="used_volume"}} {USED}\n' in text
    assert f'opsdash_disk_bytes{{volume="postgres_data"}} {PG_DATA}\n' in text
    assert 'volume="influxdb_data"' not in text
    assert "opsdash_disk_used_ratio 0.8\n" in text


def test_postgres_size_and_counts() -> None:
    view = _through_the_bus("postgres", Reading(latency_ms=2.5, metrics={
        "connections_used": 15, "connections_max": 97, "db_size_bytes": DB}), T0)
    rest = section(view, "capacity")  # type: ignore[arg-type]
    assert rest["postgres"]["db_size_mb"] == 1250.0
    raw = json.dumps(rest["postgres"])
    assert '"connections_used": 15,' in raw and '"connections_max": 97' in raw
    health = json.dumps(section(view, "health")["components"]["postgres"])  # type: ignore[arg-type]
    assert '"connections": 15,' in health and '"latency_ms": 2.5' in health
    text = prometheus_text(view, {})  # type: ignore[arg-type]
    assert f"opsdash_postgres_database_bytes {DB}\n" in text
    assert 'opsdash_postgres_connections{state="used"} 15\n' in text


def test_counts_from_sql_decimals_stay_ints_and_measurements_stay_floats() -> None:
    # asyncpg gives SUM() of counts as Decimal; a count that is integral is an int on the wire
    view = _through_the_bus("platform", Reading(latency_ms=3.0, metrics={
        "tenants_active": 34, "devices_registered": Decimal("3001"), "devices_online": 2875,
        "alerts_open": Decimal("12.0")}), T0)
    rest = json.dumps(section(view, "aggregates"))  # type: ignore[arg-type]
    assert re.search(r'"registered": 3001[,}]', rest), rest
    assert re.search(r'"active": 34[,}]', rest) and re.search(r'"open": 12[,}]', rest)
    assert "3001.0" not in rest and "34.0" not in rest
    text = prometheus_text(view, {})  # type: ignore[arg-type]
    assert 'opsdash_platform_devices{state="registered"} 3001\n' in text
    # a measurement that happens to be whole stays a float in the view
    mqtt = _through_the_bus("mqtt", Reading(latency_ms=1.0, metrics={
        "connected_clients": 14, "canary_rtt_ms": 2.0}), T0)
    comp = mqtt["health"]["components"]["mqtt"]  # type: ignore[index]
    assert type(comp["connected_clients"]) is int and type(comp["canary_rtt_ms"]) is float
