"""The schema (telemetry_bus/view_schema.py) against the real fold's views and frames: it accepts what
opsdash publishes and refuses a float count, a renamed field and a changed unit."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from telemetry_bus.view_schema import SCHEMA_PATH, check_frame, check_rest, check_view, schema_text
from tests.contract.view_source import full_ticks, walk


@pytest.fixture(scope="module")
def views() -> list[dict[str, Any]]:
    return [o.view for o in full_ticks()]


def test_the_committed_schema_file_is_the_structs() -> None:
    # the frontend's types are generated from this file: it must say what the Structs say
    assert SCHEMA_PATH.read_text() == schema_text(), "run: python -m telemetry_bus.view_schema"


def test_every_tick_of_a_full_stream_fits_the_schema(views: list[dict[str, Any]]) -> None:
    for view in views:
        check_view(view)
    last = views[-1]
    # the stream populates every section, so the check above covered them
    assert set(last) == {"meta", "health", "graph", "metrics", "capacity", "aggregates", "errors", "alerts",
                         "services", "probes", "series"}
    assert last["alerts"]["pending"] or last["alerts"]["firing"]
    assert last["capacity"]["disk"]["total_volume_bytes"] == 107_374_182_400


def _set(view: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(view)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(("path", "value", "why"), [
    (["aggregates", "devices", "registered"], 3001.0, r"Expected `int \| null`, got `float` - at `\$.aggregates.devices.registered`"),
    (["capacity", "postgres", "connections_used"], 3.0, "connections_used"),
    (["health", "components", "influxdb", "file_count"], 217.0, "file_count"),
    (["meta", "completeness", "missing_intervals"], 1.5, "missing_intervals"),
    (["errors", "counts", "auth_failures_1h"], 2.0, "auth_failures_1h"),
    (["capacity", "disk", "used_volume_gb"], 40.0, "unknown field `used_volume_gb`"),  # a unit change
    (["capacity", "disk", "total_volume_bytes"], 100.0, "total_volume_bytes"),  # bytes as a float
    (["capacity", "influxdb", "data_mb"], 7.0, "unknown field `data_mb`"),
    (["metrics", "throughput", "ingest_rate"], 1.0, "unknown field `ingest_rate`"),  # renamed
    (["health", "components", "postgres", "conections"], 1, "unknown field `conections`"),
    (["services", "ingest", "instances_healthy"], 2, "unknown field `instances_healthy`"),
])
def test_refuses_float_counts_renamed_fields_and_unit_changes(views: list[dict[str, Any]], path: list[str],
                                                              value: Any, why: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=why):
        check_view(_set(views[-1], path, value))


def test_counts_in_the_view_are_ints_and_the_schema_says_so(views: list[dict[str, Any]]) -> None:
    # belt and braces: no float anywhere that the schema calls a count
    last = views[-1]
    agg = [v for p, v in walk(last["aggregates"]) if not p.endswith((".status", ".reason", ".ts"))]
    assert agg and all(type(v) is int for v in agg)
    assert type(last["health"]["components"]["ingest"]["queue_depth"]) is int


def test_frames_and_rest_answers() -> None:
    outs = full_ticks(30)
    snap = {"type": "snapshot", "seq": outs[-1].seq, "ts": outs[-1].ts, "state": outs[-1].view}
    check_frame(snap)
    patch = {"type": "patch", "seq": outs[-1].seq, "base": outs[-1].base, "ts": outs[-1].ts,
             "patch": outs[-1].patch, "append": outs[-1].append, "errors": outs[-1].errors}
    check_frame(patch)
    check_frame({"type": "meta", "stale": False, "age_s": 0.4, "gateway": "gw-1"})
    with pytest.raises(msgspec.ValidationError, match="seq"):
        check_frame({**snap, "seq": 1.0})
    with pytest.raises(msgspec.ValidationError):
        check_frame({"type": "snapshots", "seq": 1, "state": {}})
    with pytest.raises(msgspec.ValidationError, match="unknown field `used_gb`"):
        check_rest("capacity", {"disk": {"used_gb": 1.0}})
