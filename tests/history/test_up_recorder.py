"""`opsdash up` with history on runs the recorder: it reports on the bus like the other parts (healthy,
then degraded with the reason while its database is away), `opsdash healthcheck recorder` tells it
working from dead, and the gateway answers the history endpoints; with history off it says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx

from tests.support.servers import ROOT, Mosquitto, PrivatePostgres, free_port, scaled

OPSDASH = [sys.executable, "-m", "opsdash.cli"]


def wait_for(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + scaled(timeout)
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def comp(url: str, name: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/operator/system/health", timeout=5)
    body: dict[str, Any] = r.json()["components"].get(name) or {}
    return body


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPSDASH, "healthcheck", "recorder", "--timeout", str(scaled(6))], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=scaled(30), check=False)


def test_up_runs_the_recorder_which_watches_itself(mosquitto: Mosquitto, private_pg: PrivatePostgres) -> None:
    pg = private_pg
    port = free_port()
    env = {**os.environ, "OPSDASH_MQTT_URL": mosquitto.url, "OPSDASH_LISTEN": f"127.0.0.1:{port}",
           "OPSDASH_HISTORY_URL": pg.dsn("postgres"), "OPSDASH_AGGREGATOR__ID": "agg-rec",
           "OPSDASH_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/none"}
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*OPSDASH, "up"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: comp(url, "opsdash-recorder").get("status") == "healthy", 30, "recorder healthy")
        res = healthcheck(env)
        assert res.returncode == 0 and res.stdout.startswith("healthy: "), (res.stdout, res.stderr)
        cat = wait_for(lambda: httpx.get(f"{url}/operator/system/history", timeout=5).json()
                       .get("series"), 30, "history catalogue with series")
        assert "ingest_rate" in cat or any(s.startswith("gauge:") or s.startswith("rate:") for s in cat)
        # the database goes away: the recorder says so on the bus, the live view goes on
        pg.stop()
        c = wait_for(lambda: (x := comp(url, "opsdash-recorder")).get("status") == "degraded" and x, 30,
                     "recorder degraded")
        assert "history database unavailable" in (c.get("reason") or ""), c
        assert httpx.get(f"{url}/operator/system/history", timeout=10).status_code == 503
        pg.start()
        wait_for(lambda: comp(url, "opsdash-recorder").get("status") == "healthy", 40, "recorder back")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        pg.stop()
    res = healthcheck(env)
    assert res.returncode == 1 and res.stdout.startswith("unhealthy: "), (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr


def test_recorder_refuses_to_start_with_history_off() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSDASH_")}
    res = subprocess.run([*OPSDASH, "recorder"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=scaled(30), check=False)
    assert res.returncode == 2
    assert "history is off" in res.stderr and "OPSDASH_HISTORY_URL" in res.stderr
