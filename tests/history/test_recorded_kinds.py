"""What the recorder keeps besides the series: events (a resent one stored once), the aggregator's feed
entries, probe results, alert messages, state changes."""

from __future__ import annotations

import json
import time

import aiomqtt
import asyncpg

from tests.conftest import eventually
from tests.history.conftest import Stack
from tests.support.servers import Mosquitto


async def test_events_probes_alerts_and_states_are_recorded(mosquitto: Mosquitto, stack: Stack) -> None:
    await eventually(lambda: stack.recorder.db_up, timeout=15, what="history database ready")
    now = time.time()
    event = {"boot": "b1", "seq": 7, "ts": now, "kind": "webhook_timeout", "severity": "error",
             "message": "POST https://example.com/hook timed out after 10 s", "attrs": {"tenant": "acme"}}
    probe = {"ts": now, "status": "down", "latency_ms": None, "metrics": {"connections_used": None},
             "error": "connection refused", "period_s": 1.0}
    alert = {"fingerprint": "abc123", "status": "firing", "labels": {"alertname": "component_down"},
             "annotations": {"summary": "postgres down"}, "value": 1, "starts_at": now - 30,
             "ends_at": None}
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
        for _ in range(2):  # sent twice (a QoS 1 resend): stored once
            await c.publish("$ops/v1/svc/delivery/delivery-2/events", json.dumps(event), qos=1)
        await c.publish("$ops/v1/probe/postgres", json.dumps(probe), qos=1, retain=True)
        await c.publish("$ops/v1/alerts/abc123", json.dumps(alert), qos=1, retain=True)
        await c.publish("$ops/v1/svc/delivery/delivery-2/events", b"{not json", qos=1)
    conn = await asyncpg.connect(stack.dsn)
    try:
        async def stored() -> bool:
            n = await conn.fetchval("SELECT count(*) FROM events WHERE service = 'delivery' AND seq = 7")
            p = await conn.fetchval("SELECT count(*) FROM probe_results WHERE target = 'postgres'")
            a = await conn.fetchval("SELECT count(*) FROM alerts WHERE fingerprint = 'abc123'")
            s = await conn.fetchval("SELECT count(*) FROM states WHERE component = 'postgres' AND "
                                    "status = 'down'")
            return bool(n and p and a and s)

        await eventually(stored, timeout=20, what="event, probe, alert and state change recorded")
        ev = await conn.fetch("SELECT * FROM events WHERE service = 'delivery' AND seq = 7")
        assert len(ev) == 1
        e = ev[0]
        assert (e["instance"], e["boot"], e["type"], e["severity"]) == ("delivery-2", "b1", "webhook_timeout",
                                                                         "error")
        assert abs(e["ts"].timestamp() - now) < 1e-3  # the sender's ts
        assert json.loads(e["attrs"]) == {"tenant": "acme"}
        assert await conn.fetchval("SELECT count(*) FROM events WHERE search @@ "
                                   "plainto_tsquery('simple', 'timed out')") >= 1
        p = await conn.fetchrow("SELECT * FROM probe_results WHERE target = 'postgres'")
        assert p["status"] == "down" and p["error"] == "connection refused"
        a = await conn.fetchrow("SELECT * FROM alerts WHERE fingerprint = 'abc123'")
        assert a["status"] == "firing" and abs(a["ts"].timestamp() - (now - 30)) < 1e-3
        assert json.loads(a["body"])["labels"] == {"alertname": "component_down"}
        # the aggregator's own feed: the state change of postgres to down, as an event
        feed = await conn.fetch("SELECT * FROM events WHERE boot LIKE 'feed:%' AND type = 'state_change'")
        assert any("postgres" in r["message"] for r in feed), [r["message"] for r in feed]
        assert stack.recorder.rejected >= 1  # the broken event was refused, not stored
    finally:
        await conn.close()
