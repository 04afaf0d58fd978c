"""`opsdash up` as a real process: its parts report on the bus (opsdash watches itself) and
`opsdash healthcheck` tells a working part from a dead one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import ROOT, Mosquitto, free_port, scaled

OPSDASH = [sys.executable, "-m", "opsdash.cli"]


@pytest.fixture
def up(mosquitto: Mosquitto) -> Iterator[tuple[dict[str, str], str, subprocess.Popen[str]]]:
    port = free_port()
    env = {**os.environ, "OPSDASH_MQTT_URL": mosquitto.url, "OPSDASH_LISTEN": f"127.0.0.1:{port}",
           "OPSDASH_AGGREGATOR__ID": "agg-up",
           # no platform database here: those probes report down, which is what they should do
           "OPSDASH_DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/none"}
    proc = subprocess.Popen([*OPSDASH, "up"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield env, f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def healthcheck(env: dict[str, str], part: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPSDASH, "healthcheck", part, "--timeout", str(scaled(6))], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=scaled(30), check=False)


def view_health(url: str) -> dict[str, object]:
    r = httpx.get(f"{url}/operator/system/health", timeout=5)
    r.raise_for_status()
    body: dict[str, object] = r.json()
    return body


def wait_for(pred, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + scaled(timeout)
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (httpx.HTTPError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def test_up_watches_itself_and_healthchecks_tell_working_from_dead(
        up: tuple[dict[str, str], str, subprocess.Popen[str]]) -> None:
    env, url, proc = up

    def own_parts_healthy() -> bool:
        comps = view_health(url)["components"]
        assert isinstance(comps, dict)
        return all(comps.get(f"opsdash-{p}", {}).get("status") == "healthy"
                   for p in ("aggregator", "probes", "gateway"))

    wait_for(own_parts_healthy, 20, "opsdash's own parts healthy on its dashboard")
    for part in ("aggregator", "probes", "gateway"):
        res = healthcheck(env, part)
        assert res.returncode == 0, (part, res.stdout, res.stderr)
        assert res.stdout.startswith("healthy: "), res.stdout
    # a dead opsdash: every healthcheck fails, with a reason, without a traceback
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)
    for part in ("aggregator", "probes", "gateway"):
        res = healthcheck(env, part)
        assert res.returncode == 1, (part, res.stdout, res.stderr)
        assert res.stdout.startswith("unhealthy: "), res.stdout
        assert "Traceback" not in res.stderr
