"""Disk probe: the volumes holding the configured data directories, and those directories' sizes.

Metrics: ``postgres_data_bytes`` / ``influxdb_data_bytes`` (``du``-like size of each directory, null when
not configured), ``total_volume_bytes`` / ``used_volume_bytes`` (summed over the distinct volumes) and
``used_pct`` (the fullest volume, ``df``'s Use%). Sizing is bounded by ``walk_budget_s``; a tree too
large to finish in time gives a lower bound and ``dir_complete: false``. Runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from probes.config import DiskProbeConfig
from probes.core import ProbeError, Reading, Unavailable
from probes.fs import Scan, Volume, scan, volume

__all__ = ["DirMeasure", "DiskProbe", "disk_reading", "measure"]


@dataclass(frozen=True, slots=True)
class DirMeasure:
    role: str
    path: str
    volume: Volume | None
    scan: Scan | None
    error: str | None = None


def measure(dirs: Sequence[tuple[str, str]], budget_s: float) -> list[DirMeasure]:
    """Blocking: statvfs + bounded ``du`` of each directory (the budget is shared by all of them)."""
    deadline = time.monotonic() + budget_s
    out: list[DirMeasure] = []
    for role, path in dirs:
        try:
            vol = volume(path)
        except OSError as exc:
            out.append(DirMeasure(role, path, None, None, f"{path}: {exc.strerror or exc}"))
            continue
        out.append(DirMeasure(role, path, vol, scan(path, deadline)))
    return out


def disk_reading(measures: Sequence[DirMeasure], latency_ms: float, used_warn_pct: float) -> Reading:
    """Pure: per-directory measures -> metrics, volume details, warnings."""
    warnings = [m.error for m in measures if m.error]
    if measures and len(warnings) == len(measures):
        raise ProbeError("; ".join(w for w in warnings if w))
    volumes: dict[int, Volume] = {}
    sizes: dict[str, int | None] = {"postgres": None, "influxdb": None}
    details: list[dict[str, Any]] = []
    for m in measures:
        if m.volume is None or m.scan is None:
            continue
        volumes.setdefault(m.volume.device, m.volume)
        if m.role in sizes:
            sizes[m.role] = (sizes[m.role] or 0) + m.scan.disk_bytes
        if not m.scan.complete:
            warnings.append(f"{m.path}: size is a lower bound (tree too large for the time budget "
                            f"or unreadable parts)")
        details.append({"path": m.path, "role": m.role, "mount": m.volume.mount,
                        "total_bytes": m.volume.total_bytes, "used_bytes": m.volume.used_bytes,
                        "used_pct": m.volume.used_pct, "dir_bytes": m.scan.disk_bytes,
                        "dir_complete": m.scan.complete})
    for v in volumes.values():
        if v.used_pct > used_warn_pct:
            warnings.append(f"volume {v.mount} {v.used_pct:.1f} % full (> {used_warn_pct:g} %)")
    total = sum(v.total_bytes for v in volumes.values())
    used = sum(v.used_bytes for v in volumes.values())
    return Reading(latency_ms=latency_ms, warnings=tuple(w for w in warnings if w), metrics={
        "postgres_data_bytes": sizes["postgres"],
        "influxdb_data_bytes": sizes["influxdb"],
        "total_volume_bytes": total if volumes else None,
        "used_volume_bytes": used if volumes else None,
        "used_pct": max(v.used_pct for v in volumes.values()) if volumes else None,
        "volumes": len(volumes),
    }, details={"volumes": details})


class DiskProbe:
    """The ``disk`` target."""

    target = "disk"

    def __init__(self, settings: DiskProbeConfig) -> None:
        self.settings = settings

    async def check(self) -> Reading:
        cfg = self.settings
        dirs = cfg.dirs()
        if not dirs:
            raise Unavailable("no data directories configured (probes.disk.postgres_data_dir, "
                              "probes.disk.influxdb_data_dir)")
        t0 = time.perf_counter()
        measures = await asyncio.to_thread(measure, dirs, cfg.walk_budget_s)
        return disk_reading(measures, (time.perf_counter() - t0) * 1000, cfg.used_warn_pct)


