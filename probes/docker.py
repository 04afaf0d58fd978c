"""Docker probe: containers (name, compose service, state), CPU % and memory over the Unix socket.

Computed the way ``docker stats`` computes them (docker/cli ``stats_helpers.go``): CPU % from two
one-shot samples ``cpu_sample_s`` apart, ``(cpu_delta / system_delta) * online_cpus * 100``; memory is
usage minus inactive file cache (``total_inactive_file`` on cgroup v1, ``inactive_file`` on v2).
Without a socket the result is "unknown" with ``unavailable: no docker socket`` (logged once by the
runner, not every period).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from probes.config import DockerProbeConfig
from probes.core import ProbeError, Reading, Unavailable
from probes.http import body_error, tls_context

__all__ = ["DockerProbe", "container_service", "cpu_percent", "docker_reading", "memory_used"]


def cpu_percent(prev: Mapping[str, Any], cur: Mapping[str, Any]) -> float:
    """docker CLI ``calculateCPUPercentUnix`` (prev/cur are ``cpu_stats`` objects)."""
    cpu_delta = float(cur.get("cpu_usage", {}).get("total_usage") or 0) - float(
        prev.get("cpu_usage", {}).get("total_usage") or 0)
    system_delta = float(cur.get("system_cpu_usage") or 0) - float(prev.get("system_cpu_usage") or 0)
    online = float(cur.get("online_cpus") or 0)
    if online == 0.0:
        online = float(len(cur.get("cpu_usage", {}).get("percpu_usage") or []))
    if system_delta > 0.0 and cpu_delta > 0.0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def memory_used(mem: Mapping[str, Any]) -> float:
    """docker CLI ``calculateMemUsageUnixNoCache``."""
    usage = float(mem.get("usage") or 0)
    stats = mem.get("stats") or {}
    if "total_inactive_file" in stats and stats["total_inactive_file"] < usage:  # cgroup v1
        return usage - float(stats["total_inactive_file"])
    inactive = float(stats.get("inactive_file") or 0)
    if inactive < usage:
        return usage - inactive
    return usage


def container_service(c: Mapping[str, Any]) -> str | None:
    labels = c.get("Labels") or {}
    service = labels.get("com.docker.compose.service")
    return str(service) if service else None


def _name(c: Mapping[str, Any]) -> str:
    names = c.get("Names") or []
    return str(names[0]).lstrip("/") if names else str(c.get("Id", "?"))[:12]


def docker_reading(containers: Sequence[Mapping[str, Any]],
                   first: Mapping[str, Mapping[str, Any]], second: Mapping[str, Mapping[str, Any]],
                   latency_ms: float, memory_warn_ratio: float) -> Reading:
    """Pure: container list + two stats samples per running container (by Id) -> metrics, details."""
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    running = 0
    for c in containers:
        state = str(c.get("State") or "").lower()
        name = _name(c)
        row: dict[str, Any] = {"name": name, "service": container_service(c), "state": state,
                               "status": c.get("Status"), "cpu_pct": None, "mem_bytes": None,
                               "mem_limit_bytes": None}
        health = (c.get("Health") or {}).get("Status") if isinstance(c.get("Health"), Mapping) else None
        if health == "unhealthy" or "(unhealthy)" in str(c.get("Status") or ""):
            row["health"] = "unhealthy"
            warnings.append(f"{name} unhealthy")
        if state == "running":
            running += 1
        elif state in ("restarting", "dead"):
            warnings.append(f"{name} {state}")
        cid = str(c.get("Id"))
        s1, s2 = first.get(cid), second.get(cid)
        if state == "running" and s2:
            mem = s2.get("memory_stats") or {}
            if mem.get("usage") is not None:
                row["mem_bytes"] = int(memory_used(mem))
                limit = mem.get("limit") or 0
                row["mem_limit_bytes"] = int(limit) if limit else None
                if limit and row["mem_bytes"] > memory_warn_ratio * float(limit):
                    warnings.append(f"{name} memory {row['mem_bytes'] / float(limit):.0%} of its limit")
            if s1 and s1.get("cpu_stats") and s2.get("cpu_stats"):
                row["cpu_pct"] = round(cpu_percent(s1["cpu_stats"], s2["cpu_stats"]), 2)
        rows.append(row)
    rows.sort(key=lambda r: (r["service"] or "", r["name"]))
    cpu_total = sum(r["cpu_pct"] for r in rows if r["cpu_pct"] is not None)
    mem_total = sum(r["mem_bytes"] for r in rows if r["mem_bytes"] is not None)
    return Reading(latency_ms=latency_ms, warnings=tuple(warnings), details={"containers": rows},
                   metrics={"containers_running": running, "containers_total": len(rows),
                            "cpu_pct_total": round(cpu_total, 2), "mem_bytes_total": mem_total})


class DockerProbe:
    """The ``docker`` target."""

    target = "docker"

    def __init__(self, settings: DockerProbeConfig) -> None:
        self.settings = settings
        self.tls = tls_context()

    async def check(self) -> Reading:
        cfg = self.settings
        if not await asyncio.to_thread(os.path.exists, cfg.socket):
            raise Unavailable("no docker socket")
        transport = httpx.AsyncHTTPTransport(uds=cfg.socket, verify=self.tls)
        base = f"http://docker/v{cfg.api_version}"
        async with httpx.AsyncClient(transport=transport, base_url=base, timeout=cfg.timeout_s,
                                     verify=self.tls) as client:
            t0 = time.perf_counter()
            params: dict[str, str] = {"all": "true"}
            if cfg.project:
                params["filters"] = json.dumps({"label": [f"com.docker.compose.project={cfg.project}"]})
            try:
                r = await client.get("/containers/json", params=params)
            except httpx.ConnectError as exc:
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, PermissionError) or "permission" in str(exc).lower():
                    raise Unavailable(f"permission denied on {cfg.socket}") from exc
                raise ProbeError(f"docker daemon not answering on {cfg.socket}: {exc}") from exc
            except httpx.HTTPError as exc:
                raise ProbeError(f"docker API: {type(exc).__name__}: {exc}") from exc
            latency_ms = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                raise ProbeError(f"docker API answered HTTP {r.status_code}: {body_error(r)}")
            containers = [c for c in r.json()
                          if (c.get("Labels") or {}).get("com.docker.compose.oneoff") != "True"]
            running = [str(c["Id"]) for c in containers if str(c.get("State", "")).lower() == "running"]
            sem = asyncio.Semaphore(16)

            async def sample(cid: str) -> tuple[str, dict[str, Any] | None]:
                async with sem:
                    try:
                        s = await client.get(f"/containers/{cid}/stats",
                                             params={"stream": "false", "one-shot": "true"})
                    except httpx.HTTPError:
                        return cid, None
                return cid, (s.json() if s.status_code == 200 else None)

            async def all_samples() -> dict[str, dict[str, Any]]:
                pairs = await asyncio.gather(*(sample(cid) for cid in running))
                return {cid: s for cid, s in pairs if s}

            first = await all_samples()
            if running:
                await asyncio.sleep(cfg.cpu_sample_s)
            second = await all_samples() if running else {}
        return docker_reading(containers, first, second, latency_ms, cfg.memory_warn_ratio)
