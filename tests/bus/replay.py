"""A recorded ops stream and the views the fold made of it: the guard that refactoring the fold (or
the view builder) changes no byte of its output unless on purpose.

``tests/bus/fixtures/replay_stream.jsonl.gz`` holds the stream (every message with its arrival time,
and the tick times); ``tests/bus/fixtures/replay_expected.json`` the sha256 of each tick's output and
the last tick's whole view. ``python -m tests.bus.replay --record`` re-records the expected outputs
(``--new-stream`` the stream too); do it only when the view changes on purpose, and say why in the
commit. History: recorded through the pre-split fold (byte-identical after the split); re-recorded when
probe counts became ints and sizes bytes (issue 10).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import encode, topics
from telemetry_bus.fold import Fold, TickOutput
from tests.bus.simulate import ROOT, FakeReporter

FIXTURES = Path(__file__).parent / "fixtures"
STREAM = FIXTURES / "replay_stream.jsonl.gz"
EXPECTED = FIXTURES / "replay_expected.json"
T0 = 1_700_000_000.0

Step = dict[str, Any]  # {"t": arrival, "topic": ..., "payload": b64, "retained": bool} or {"tick": t, "full": bool}


def _probe(target: str, t: float, status: str, metrics: dict[str, Any], details: dict[str, Any] | None = None,
           error: str | None = None, period: float = 5.0, latency: float | None = 3.25) -> bytes:
    body: dict[str, Any] = {"ts": t, "status": status, "latency_ms": latency, "metrics": metrics,
                            "period_s": period, "details": details or {}}
    if error:
        body["error"] = error
    return encode(body)


def make_stream(seconds: int = 150, seed: int = 7) -> list[Step]:
    """Seed services with counters, totals, gauges and histograms; losses, duplicates, a restart, a
    Last Will, events, every probe (health and capacity), garbage, and early ticks between regular ones."""
    rnd = random.Random(seed)
    steps: list[Step] = []

    def msg(t: float, topic: str, payload: bytes, retained: bool = False) -> None:
        steps.append({"t": t, "topic": topic, "payload": base64.b64encode(payload).decode(), "retained": retained})

    class Sink:  # FakeReporter feeds a fold: record instead
        def feed(self, topic: str, payload: bytes, now: float, retained: bool = False) -> None:
            msg(now, topic, payload, retained)

    sink: Any = Sink()
    reps = [FakeReporter(s, f"{s}-{i}", skew_s=rnd.uniform(-2, 2))
            for s in ("ingest", "evaluator", "dispatcher", "delivery") for i in range(2)]
    for r in reps:
        r.core.t0 = T0 - 1 + r.skew_s
        r.online(sink, T0)
    ev_seq = 0
    for sec in range(seconds):
        base = T0 + sec
        for k, r in enumerate(reps):
            t = base + 0.1 * k + rnd.uniform(0, 0.05)
            if r.instance == "delivery-1" and sec == 60:
                r.offline(sink, t, "lost")
                continue
            if r.instance == "delivery-1" and 60 < sec < 80:
                continue
            if r.instance == "delivery-1" and sec == 80:
                r.restart("boot-2")
                r.core.t0 = t - 1 + r.skew_s
                r.online(sink, t)
            match r.service:
                case "ingest":
                    r.core.inc("messages_received", rnd.randint(80, 120))
                    r.core.inc("points_written", rnd.randint(300, 400))
                    r.core.observe("influx_write_ms", rnd.lognormvariate(1.5, 0.6))
                    r.core.set_gauge("queue_depth", rnd.randint(0, 1500 if 40 < sec < 50 else 200))
                case "evaluator":
                    r.core.inc("rules_evaluated", rnd.randint(500, 600))
                    r.core.inc("alerts_triggered", rnd.randint(0, 3))
                case "dispatcher":
                    r.core.inc("alerts_routed", rnd.randint(0, 3))
                    r.core.set_gauge("pending_jobs", rnd.randint(0, 80 if sec > 100 else 10))
                case "delivery":
                    r.core.inc("webhooks_sent", rnd.randint(5, 10))
                    r.core.inc("webhooks_failed", rnd.randint(0, 6 if sec > 110 else 1))
            if r.instance == "evaluator-1" and 90 < sec < 95:
                r.core.set_health("degraded", "rule backlog")
            elif r.instance == "evaluator-1":
                r.core.set_health("ok")
            m = r.take(t)
            roll = rnd.random()
            if roll < 0.04:
                continue  # lost: repaired from totals by the next one
            r.send(sink, m, t)
            if roll > 0.97:
                r.send(sink, m, t + 0.02)  # duplicate
        if sec % 7 == 3:
            ev_seq += 1
            msg(base + 0.5, topics.events(ROOT, "delivery", "delivery-0"), encode(
                {"boot": "boot-1", "seq": ev_seq, "ts": base + 0.5, "kind": "webhook_timeout",
                 "severity": "error", "message": f"POST https://hooks.example/{ev_seq} timed out",
                 "attrs": {"tenant": f"t-{ev_seq % 4}"}}))
        if sec % 5 == 0:
            t = base + 0.7
            pg_status = "degraded" if 30 <= sec < 45 else "healthy"
            msg(t, topics.probe(ROOT, "postgres"), _probe("postgres", t, pg_status, {
                "connections_used": 3 + sec % 4, "connections_max": 100, "db_size_bytes": 52_428_800 + 4096 * sec},
                {"largest_tables": [{"name": "devices", "bytes": 8192 * 1000}]}))
            msg(t, topics.probe(ROOT, "influxdb"), _probe("influxdb", t, "healthy", {
                "file_count": 217 + sec // 10, "file_limit": 1000, "data_bytes": 7_516_192_768}))
            msg(t, topics.probe(ROOT, "mqtt"), _probe("mqtt", t, "healthy", {
                "connected_clients": 14, "canary_rtt_ms": 2.5 + (sec % 3) / 4}))
            if sec < 100:  # then keycloak's probe goes silent: stale
                msg(t, topics.probe(ROOT, "keycloak"), _probe("keycloak", t, "healthy", {"active_sessions": 5}))
            msg(t, topics.probe(ROOT, "disk"), _probe("disk", t, "healthy", {
                "postgres_data_bytes": 1_073_741_824 + 1024 * sec, "influxdb_data_bytes": 7_516_192_768,
                "total_volume_bytes": 107_374_182_400, "used_volume_bytes": 42_949_672_960,
                "used_pct": 40.0}))
            msg(t, topics.probe(ROOT, "docker"), _probe("docker", t, "healthy", {
                "containers_running": 9, "containers_total": 10},
                {"containers": [{"name": "ingest", "memory_bytes": 104_857_600, "memory_limit_bytes": 536_870_912}]}))
            msg(t, topics.probe(ROOT, "platform"), _probe("platform", t, "healthy", {
                "tenants_active": 34, "tenants_suspended": 2, "tenants_deleted": 1, "tenants_total": 37,
                "devices_registered": 3001, "devices_online": 2875, "devices_stale": 126,
                "alerts_open": 12, "alerts_closed_today": 40, "alerts_triggered_today": 52,
                "integrations_total": 9, "integrations_active": 8, "integrations_webhook": 5,
                "integrations_email": 3, "integrations_sms": 1}))
        if sec % 11 == 5:
            msg(base + 0.8, f"{ROOT}/v1/svc/ingest/bad-{sec}/metrics", b"{not json")
            msg(base + 0.8, f"{ROOT}/v1/nope/{sec}", b"{}")
        if sec % 13 == 0:
            steps.append({"tick": base + 0.35, "full": False})  # an early tick
        steps.append({"tick": base + 1.005, "full": True})
    steps.sort(key=lambda s: s.get("t", s.get("tick")))
    return steps


def output_bytes(out: TickOutput) -> bytes:
    return encode({"seq": out.seq, "ts": out.ts, "view": out.view, "patch": out.patch, "append": out.append,
                   "base": out.base, "errors": out.errors})


def replay(steps: list[Step], fold: Fold | None = None) -> tuple[list[str], TickOutput]:
    """Feed ``steps`` into a fresh fold; (sha256 of each tick's output, the last tick's output)."""
    fold = fold or Fold(AggregatorConfig(), ROOT, T0)
    digests: list[str] = []
    last: TickOutput | None = None
    for s in steps:
        if "tick" in s:
            last = fold.tick(s["tick"], full=s["full"])
            digests.append(hashlib.sha256(output_bytes(last)).hexdigest())
        else:
            fold.feed(s["topic"], base64.b64decode(s["payload"]), s["t"], s["retained"])
    assert last is not None
    return digests, last


def load_stream() -> list[Step]:
    with gzip.open(STREAM, "rt") as f:
        return [json.loads(line) for line in f]


def record(new_stream: bool = False) -> None:
    """Record the expected outputs (and the stream itself only when there is none or asked to)."""
    FIXTURES.mkdir(exist_ok=True)
    if new_stream or not STREAM.exists():
        steps = make_stream()
        with gzip.GzipFile(STREAM, "wb", mtime=0) as f:
            f.write("".join(json.dumps(s, separators=(",", ":")) + "\n" for s in steps).encode())
    steps = load_stream()
    digests, last = replay(steps)
    EXPECTED.write_text(json.dumps({"ticks": digests, "last_view": json.loads(encode(last.view))},
                                   indent=1, sort_keys=False) + "\n")
    print(f"recorded {len(steps)} steps, {len(digests)} ticks")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--record"] and sys.argv[2:] in ([], ["--new-stream"]):
        record(new_stream=sys.argv[2:] == ["--new-stream"])
    else:
        sys.exit("usage: python -m tests.bus.replay --record [--new-stream]")
