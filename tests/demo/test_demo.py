"""The demo from the README command: starts, serves the dashboard, fills the health grid, stops clean.

Runs ``./run demo`` from the repository exactly as a newcomer would (it sets up what is missing, builds
the frontend and starts ``opsdash demo``), with no broker or database configured, so it starts its
private mosquitto and PostgreSQL in a temporary directory of ours.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import ROOT, free_port, scaled

pytestmark = pytest.mark.slow

EIGHT = {"postgres", "influxdb", "mqtt", "keycloak", "ingest", "evaluator", "dispatcher", "delivery"}
REAL_STATES = {"healthy", "degraded", "down"}


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:  # 503 until the first view arrives
        return exc.code, exc.read()


def _json(url: str) -> dict[str, Any]:
    status, body = _get(url)
    return json.loads(body) if status == 200 else {}


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd and _alive(int(d.name)):
                found.append(f"{d.name}: {cmd}")
    return found


@pytest.fixture
def temp_base() -> Iterator[Path]:
    # Under the system's temporary directory, reachable by the postgres user that the demo's private
    # cluster runs as when we are root (pytest's own tmp_path is 0700 root).
    d = Path(tempfile.mkdtemp(prefix="opsdash-demo-test-"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_demo_from_the_readme_command(temp_base: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OPSDASH_") or k == "OPSDASH_TIMEOUT_FACTOR"}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [str(ROOT / "run"), "demo", "--listen", f"127.0.0.1:{port}", "--temp-dir", str(temp_base),
         "--seed", "7", "--first-kill", "600"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            if "dashboard ready: open http://" in line:
                ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + scaled(150)
        while not ready.wait(0.2) and proc.poll() is None and time.monotonic() < deadline:
            seen |= _descendants(proc.pid)
        assert ready.is_set(), "no 'dashboard ready' line:\n" + "\n".join(lines[-40:])
        url = f"http://127.0.0.1:{port}"
        assert any(f"open {url}/" in line for line in lines)
        # it said what it started, and where
        text = "\n".join(lines)
        assert re.search(r"private mosquitto on 127\.0\.0\.1:\d+", text), text
        assert re.search(r"PostgreSQL: private server on 127\.0\.0\.1:\d+", text), text
        tmpdirs = list(temp_base.glob("opsdash-demo-*"))
        assert len(tmpdirs) == 1 and str(tmpdirs[0]) in text

        # the dashboard itself is served
        status, body = _get(url + "/")
        assert status == 200 and b"<html" in body.lower()

        # within 30 s of serving: all 8 components with real states, services with the instances the
        # simulator runs (ingest x3, others x2), the seeded platform counted by the platform probe
        deadline = time.monotonic() + scaled(30)
        health: dict[str, Any] = {}
        aggregates: dict[str, Any] = {}
        while time.monotonic() < deadline:
            seen |= _descendants(proc.pid)
            health = _json(url + "/operator/system/health")
            aggregates = _json(url + "/operator/system/aggregates")
            comps = health.get("components", {})
            states = {name: (c or {}).get("status") for name, c in comps.items()}
            if (set(states) >= EIGHT and all(states[n] in REAL_STATES for n in EIGHT)
                    and (aggregates.get("tenants") or {}).get("total") is not None):
                break
            time.sleep(0.5)
        comps = health["components"]
        assert set(comps) >= EIGHT, health
        assert {n: comps[n]["status"] for n in EIGHT if comps[n]["status"] not in REAL_STATES} == {}, health
        for svc, n in {"ingest": 3, "evaluator": 2, "dispatcher": 2, "delivery": 2}.items():
            assert comps[svc]["instances_total"] == n, comps[svc]
        assert comps["postgres"]["status"] in REAL_STATES and comps["postgres"].get("connections")
        assert aggregates["tenants"]["total"] == 40, aggregates
        assert aggregates["devices"]["registered"] >= 3000, aggregates
        assert 0 < aggregates["devices"]["online"] < aggregates["devices"]["registered"], aggregates
        # memory without Docker (issue 16): every simulated instance, the broker, the database and
        # opsdash itself, from /proc and cgroups; each figure agrees with the kernel's VmRSS
        deadline = time.monotonic() + scaled(30)
        memory: dict[str, Any] = {}
        while time.monotonic() < deadline:
            memory = (_json(url + "/operator/system/capacity") or {}).get("memory") or {}
            if len([c for c in memory.get("containers") or [] if c.get("mem_bytes")]) >= 12:
                break
            time.sleep(0.5)
        rows = {c["name"]: c for c in memory.get("containers") or []}
        assert memory.get("available") is True and memory.get("source") == "processes", memory
        expected = {"opsdash", "mosquitto", "postgres", "ingest-1", "ingest-2", "ingest-3", "evaluator-1",
                    "evaluator-2", "dispatcher-1", "dispatcher-2", "delivery-1", "delivery-2"}
        assert expected <= set(rows), sorted(rows)
        assert all(rows[n]["state"] == "running" and rows[n]["mem_bytes"] > 2**20 for n in expected), rows
        assert rows["postgres"]["pids"] >= 3  # the postmaster and its backends
        pid = int(_processes_mentioning("opsdash.simulator instance --service ingest --index 1 ")[0]
                  .split(":")[0])
        rss = int(next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if ln.startswith("VmRSS:")).split()[1]) * 1024
        assert abs(rows["ingest-1"]["mem_bytes"] - rss) < 0.25 * rss, (rows["ingest-1"], rss)
        # history: a database of its own with the simulated past, newest hour first (issue 11)
        assert "history: database opsdash on the same server" in "\n".join(lines), "\n".join(lines[-40:])
        deadline = time.monotonic() + scaled(120)
        past: list[Any] = []
        while time.monotonic() < deadline:
            h = _json(url + "/operator/system/history?series=ingest_rate,write_p99&from=-1h&step=60")
            past = [v for _t, v in (h.get("series") or {}).get("ingest_rate", []) if v is not None]
            if len(past) >= 50:
                break
            time.sleep(1)
        assert len(past) >= 50 and all(v > 0 for v in past), past
        assert (_json(url + "/operator/system/history/status") or {}).get("enabled") is True
        seen |= _descendants(proc.pid)
        assert len(seen) >= 10, seen  # mosquitto + 9 simulated instances (+ postgres helpers)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(scaled(40))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = None
        reader.join(5)
    assert rc == 0, "\n".join(lines[-40:])
    assert any("stopped cleanly" in line for line in lines), "\n".join(lines[-20:])
    time.sleep(0.5)
    assert [p for p in seen if _alive(p)] == [], "left behind: " + repr(
        [Path(f"/proc/{p}/cmdline").read_bytes() for p in seen if _alive(p)])
    assert _processes_mentioning(str(temp_base)) == []
    assert list(temp_base.glob("opsdash-demo-*")) == []
