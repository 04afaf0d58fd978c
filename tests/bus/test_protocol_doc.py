"""docs/protocol.md is enough to publish from another language: its examples, sent with mosquitto_pub
exactly as written, are folded into the view."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from telemetry_bus.service import AggregatorService
from tests.conftest import eventually
from tests.support.servers import Mosquitto

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
BLOCK = re.compile(r"```json example=(?P<name>\S+) topic=(?P<topic>\S+)(?P<retain> retain)?\n(?P<body>.*?)```",
                   re.S)


def examples() -> dict[str, dict[str, Any]]:
    found = {m["name"]: {"topic": m["topic"], "retain": bool(m["retain"]), "body": m["body"]}
             for m in BLOCK.finditer(DOC.read_text())}
    assert set(found) == {"status", "status-lost", "metrics", "events", "probe"}, found.keys()
    return found


def test_every_example_decodes_with_the_contract() -> None:
    from telemetry_bus.contract import decode_event, decode_metrics, decode_probe, decode_status
    ex = examples()
    decode_status(ex["status"]["body"].encode())
    assert decode_status(ex["status-lost"]["body"].encode()).reason == "lost"
    m = decode_metrics(ex["metrics"]["body"].encode())
    h = m.hist["influx_write_ms"]
    assert h.count == h.zero_count + sum(h.counts)
    decode_event(ex["events"]["body"].encode())
    decode_probe(ex["probe"]["body"].encode())


async def test_examples_published_with_mosquitto_pub_are_folded(
        mosquitto: Mosquitto, aggregator: AggregatorService) -> None:
    # The metrics example (seq 42) first: to the aggregator that is a service it meets mid-boot, so
    # only the interval's deltas count. (After a live status of a new boot, the totals since boot
    # would count and seq 1..41 would be missing intervals: test_fold covers that.)
    for name in ("metrics", "status", "events", "probe", "status-lost"):
        ex = examples()[name]
        subprocess.run(["mosquitto_pub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-q", "1",
                        "-t", ex["topic"], "-m", ex["body"], *(["-r"] if ex["retain"] else [])],
                       check=True, timeout=10)
    fold = aggregator.fold

    def folded() -> bool:
        ingest = fold.services["ingest"].instances
        return ("ingest-7" in ingest and ingest["ingest-7"].totals.get("messages_received") == 125
                and "ingest-8" in ingest and "postgres" in fold.probes
                and any(e["type"] == "webhook_timeout" for e in fold.feed_items))

    await eventually(folded, 5, what="all examples folded")
    assert fold.quarantined == 0
    i7 = fold.services["ingest"].instances["ingest-7"]
    assert (i7.version, i7.boot, i7.last_seq, i7.gauges) == ("2.4.1", "01JDX3K8W6", 42, {"queue_depth": 0})
    assert i7.totals == {"messages_received": 125, "messages_written": 124}
    await eventually(lambda: aggregator.last is not None
                     and aggregator.last.view["services"]["ingest"]["instances"].get("ingest-8", {}).get("status")
                     == "down", 3, what="Last Will example shows down")
    view = aggregator.last.view if aggregator.last else {}
    assert view["services"]["ingest"]["instances"]["ingest-8"]["reason"] == "lost (Last Will)"
    pg = view["health"]["components"]["postgres"]
    assert (pg["status"], pg["connections"], pg["max_connections"]) == ("healthy", 15, 100)
    assert view["metrics"]["latency"]["samples"] == 124
    feed = [e for e in view["errors"]["errors"] if e["type"] == "webhook_timeout"]
    assert feed[0]["message"] == "POST https://example.com/hook timed out after 10 s"
    assert view["errors"]["counts"]["delivery_failures_1h"] == 1

