"""Processes probe: memory and CPU per configured process, systemd unit or cgroup, where there is no
Docker socket (systemd hosts, a bare machine, the demo). With a Docker socket the docker probe reports
the containers and this one says so ("unknown"), once.

Where the figures come from (each row says which, ``source``):

- ``unit`` / ``cgroup``: the cgroup's own accounting. cgroup v2 (``<root>/cgroup.controllers`` exists):
  ``memory.current`` minus ``inactive_file`` of ``memory.stat`` (what ``docker stats`` shows: usage
  without the reclaimable page cache), limit ``memory.max`` (``max`` = none), CPU ``usage_usec`` of
  ``cpu.stat``. cgroup v1: the memory controller's ``memory.usage_in_bytes`` minus
  ``total_inactive_file``, ``memory.limit_in_bytes`` (the kernel's "no limit", ~2^63, = none), CPU
  ``cpuacct.usage``. A unit's cgroup is looked up under the root (``system.slice/<unit>`` first).
- ``match`` / ``pid`` / ``pid_file``: ``/proc``: the processes whose command line (arguments joined by
  spaces) matches the regular expression, or that pid (with ``tree``: and its descendants). Memory is
  the sum of their ``VmRSS`` (pages shared between them count once per process), CPU ``utime + stime``
  of ``/proc/<pid>/stat``; the limit is the ``memory.max`` of their cgroup when all share one.

CPU % is over ``cpu_sample_s`` between two samples, 100 = one core (as ``docker stats``). The rows
have the docker probe's shape (``name``, ``service``, ``state``, ``cpu_pct``, ``mem_bytes``,
``mem_limit_bytes``), so the capacity section shows them the same way.

Pure core: :func:`processes_reading` (two samples -> a Reading); the file readers are thin.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from probes.config import ProcessesProbeConfig, ProcessTarget
from probes.core import ProbeError, Reading, Unavailable

__all__ = ["ProcessesProbe", "Sample", "cgroup_of", "processes_reading", "read_cgroup", "read_procs",
           "sample_target"]

#: cgroup v1 reports "no limit" as a page-rounded 2^63 - 1; anything this large is no limit.
NO_LIMIT_V1: Final = 2**62
CLK_TCK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class Sample:
    """One target at one moment. ``found`` False: nothing to measure (``error`` says why)."""

    found: bool
    source: str = ""  # "cgroup v2", "cgroup v1", "proc"
    mem_bytes: int | None = None
    mem_limit_bytes: int | None = None
    #: Cumulative CPU time in microseconds (per pid for /proc, so a pid set that changes is handled).
    cpu_us: Mapping[str, float] | None = None
    pids: int = 0
    where: str = ""
    error: str | None = None


def _kv(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value.strip())
        except ValueError:
            continue
    return out


def _read(path: Path) -> str:
    return path.read_text()


def _cgroup_v2(root: Path) -> bool:
    return (root / "cgroup.controllers").exists()


def find_unit(root: Path, unit: str) -> str | None:
    """The cgroup path (relative to the memory hierarchy) of a systemd unit, or None."""
    base = root if _cgroup_v2(root) else root / "memory"
    first = base / "system.slice" / unit
    if first.is_dir():
        return f"system.slice/{unit}"
    for depth in range(1, 5):
        for hit in base.glob("/".join(["*"] * depth) + f"/{unit}"):
            if hit.is_dir():
                return str(hit.relative_to(base))
    return None


def read_cgroup(root: Path, rel: str, proc: Path | None = None) -> Sample:
    """Memory and CPU of one cgroup (v2, else v1's memory and cpuacct controllers; on v1 without a
    cpuacct group of the same path, the CPU of the group's processes from ``proc``)."""
    rel = rel.strip("/")
    if _cgroup_v2(root):
        d = root / rel
        try:
            current = int(_read(d / "memory.current"))
            stat = _kv(_read(d / "memory.stat"))
            raw_max = _read(d / "memory.max").strip()
        except (OSError, ValueError) as exc:
            return Sample(False, "cgroup v2", where=f"/{rel}", error=f"cgroup /{rel}: {_why(exc)}")
        inactive = stat.get("inactive_file", 0)
        mem = current - inactive if inactive < current else current
        limit = None if raw_max == "max" else int(raw_max)
        try:
            cpu: Mapping[str, float] | None = {"cgroup": float(_kv(_read(d / "cpu.stat"))["usage_usec"])}
        except (OSError, KeyError, ValueError):
            cpu = None
        try:
            pids = len(_read(d / "cgroup.procs").split())
        except OSError:
            pids = 0
        return Sample(True, "cgroup v2", mem, limit, cpu, pids, f"/{rel}")
    d = root / "memory" / rel
    try:
        usage = int(_read(d / "memory.usage_in_bytes"))
        stat = _kv(_read(d / "memory.stat"))
        raw_limit = int(_read(d / "memory.limit_in_bytes"))
    except (OSError, ValueError) as exc:
        return Sample(False, "cgroup v1", where=f"/{rel}", error=f"cgroup /{rel}: {_why(exc)}")
    inactive = stat.get("total_inactive_file", 0)
    mem = usage - inactive if inactive < usage else usage
    try:
        members = [int(p) for p in _read(d / "cgroup.procs").split()]
    except (OSError, ValueError):
        members = []
    try:
        cpu = {"cgroup": int(_read(root / "cpuacct" / rel / "cpuacct.usage")) / 1000.0}
    except (OSError, ValueError):
        cpu = None
        if proc is not None and members:
            figures = {str(p): f[1] for p in members if (f := _proc_figures(proc, p)) is not None}
            cpu = figures or None
    pids = len(members)
    return Sample(True, "cgroup v1", mem, None if raw_limit >= NO_LIMIT_V1 else raw_limit, cpu, pids,
                  f"/{rel}")


def _why(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return str(exc) or type(exc).__name__


def cgroup_of(proc: Path, pid: int, v2: bool) -> str | None:
    """The cgroup of a process in the memory hierarchy (v2: the ``0::`` line; v1: ``memory``)."""
    try:
        text = _read(proc / str(pid) / "cgroup")
    except OSError:
        return None
    for line in text.splitlines():
        _hid, controllers, path = [*line.split(":", 2), "", ""][:3]
        if (v2 and _hid == "0" and controllers == "") or (not v2 and "memory" in controllers.split(",")):
            return path
    return None


def _proc_figures(proc: Path, pid: int) -> tuple[int, float] | None:
    """(VmRSS bytes, utime + stime in µs) of a process; None when it is gone or a kernel thread."""
    try:
        status = _read(proc / str(pid) / "status")
        stat = _read(proc / str(pid) / "stat")
    except OSError:
        return None
    rss = None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
            break
    if rss is None:
        return None  # kernel thread or zombie: no memory of its own
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (IndexError, ValueError):
        return None
    return rss, ticks * 1e6 / CLK_TCK


def _children(proc: Path) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = _read(entry / "stat")
        except OSError:
            continue
        try:
            ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        except (IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def pids_for(proc: Path, target: ProcessTarget, own_pid: int) -> tuple[list[int], str]:
    """The pids a ``match`` / ``pid`` / ``pid_file`` target names now, and a description."""
    roots: list[int] = []
    where = ""
    if target.match:
        pattern = re.compile(target.match)
        for entry in proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == own_pid:
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            args = cmdline.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
            if args and pattern.search(args):
                roots.append(int(entry.name))
        where = f"processes matching {target.match!r}"
        if target.under_pid:
            mine = _descendants(_children(proc), [target.under_pid])
            roots = [p for p in roots if p in mine]
            where += f" under pid {target.under_pid}"
    else:
        if target.pid_file:
            try:
                pid = int(Path(target.pid_file).read_text().split()[0])
            except (OSError, ValueError, IndexError) as exc:
                return [], f"pid file {target.pid_file}: {_why(exc)}"
            where = f"pid {pid} from {target.pid_file}"
        else:
            pid = target.pid
            where = f"pid {pid}"
        if (proc / str(pid)).is_dir():
            roots.append(pid)
    if target.tree and roots:
        roots = sorted(_descendants(_children(proc), roots))
    return roots, where


def _descendants(kids: Mapping[int, list[int]], roots: Sequence[int]) -> set[int]:
    """``roots`` and every process below them."""
    seen = set(roots)
    todo = list(roots)
    while todo:
        for kid in kids.get(todo.pop(), []):
            if kid not in seen:
                seen.add(kid)
                todo.append(kid)
    return seen


def read_procs(proc: Path, cgroup_root: Path, pids: Sequence[int], where: str) -> Sample:
    """Memory (sum of VmRSS) and CPU (per pid) of a set of processes."""
    mem = 0
    cpu: dict[str, float] = {}
    groups: set[str | None] = set()
    v2 = _cgroup_v2(cgroup_root)
    for pid in pids:
        got = _proc_figures(proc, pid)
        if got is None:
            continue
        mem += got[0]
        cpu[str(pid)] = got[1]
        groups.add(cgroup_of(proc, pid, v2))
    if not cpu:
        return Sample(False, "proc", where=where, error=f"no process: {where}")
    limit = None
    if len(groups) == 1 and (group := next(iter(groups))) is not None:
        limit = read_cgroup(cgroup_root, group).mem_limit_bytes
    return Sample(True, "proc", mem, limit, cpu, len(cpu), where)


def sample_target(target: ProcessTarget, proc: Path, cgroup_root: Path, own_pid: int) -> Sample:
    """One sample of one target (blocking file reads: run it in a thread)."""
    if target.unit or target.cgroup:
        rel = target.cgroup or find_unit(cgroup_root, target.unit)
        if rel is None:
            return Sample(False, "cgroup", where=target.unit, error=f"unit {target.unit}: no cgroup found")
        return read_cgroup(cgroup_root, rel, proc)
    pids, where = pids_for(proc, target, own_pid)
    if not pids:
        return Sample(False, "proc", where=where, error=f"no process: {where}")
    return read_procs(proc, cgroup_root, pids, where)


def _cpu_pct(first: Sample | None, second: Sample, dt: float) -> float | None:
    if first is None or first.cpu_us is None or second.cpu_us is None or dt <= 0:
        return None
    # per key present in both samples: a pid that appeared or left counts from when it was seen
    used = sum(max(0.0, second.cpu_us[k] - first.cpu_us[k]) for k in second.cpu_us if k in first.cpu_us)
    return round(used / (dt * 1e6) * 100.0, 2)


def processes_reading(targets: Sequence[ProcessTarget], first: Mapping[str, Sample],
                      second: Mapping[str, Sample], dt: float, latency_ms: float,
                      memory_warn_ratio: float) -> Reading:
    """Pure: two samples per target (by name), ``dt`` seconds apart -> metrics and rows."""
    rows: list[dict[str, object]] = []
    warnings: list[str] = []
    for t in targets:
        s = second.get(t.name)
        if s is None or not s.found:
            why = s.error if s is not None and s.error else "not sampled"
            warnings.append(f"{t.name}: {why}")
            rows.append({"name": t.name, "service": t.service or None, "state": "not found",
                         "cpu_pct": None, "mem_bytes": None, "mem_limit_bytes": None,
                         "source": s.source if s else None, "reason": why})
            continue
        row: dict[str, object] = {
            "name": t.name, "service": t.service or None, "state": "running",
            "cpu_pct": _cpu_pct(first.get(t.name), s, dt), "mem_bytes": s.mem_bytes,
            "mem_limit_bytes": s.mem_limit_bytes, "source": s.source, "pids": s.pids, "where": s.where}
        limit = s.mem_limit_bytes
        if limit and s.mem_bytes is not None and s.mem_bytes > memory_warn_ratio * limit:
            warnings.append(f"{t.name} memory {s.mem_bytes / limit:.0%} of its limit")
        rows.append(row)
    rows.sort(key=lambda r: (str(r["service"] or ""), str(r["name"])))
    running = sum(1 for r in rows if r["state"] == "running")
    cpu_total = sum(float(r["cpu_pct"]) for r in rows if isinstance(r["cpu_pct"], (int, float)))
    mem_total = sum(int(r["mem_bytes"]) for r in rows if isinstance(r["mem_bytes"], int))
    return Reading(latency_ms=latency_ms, warnings=tuple(warnings), details={"containers": rows},
                   metrics={"processes_running": running, "processes_total": len(rows),
                            "cpu_pct_total": round(cpu_total, 2), "mem_bytes_total": mem_total})


class ProcessesProbe:
    """The ``processes`` target."""

    target = "processes"

    def __init__(self, settings: ProcessesProbeConfig, docker_socket: str | None = None) -> None:
        self.settings = settings
        self.docker_socket = docker_socket

    def _sample_all(self) -> dict[str, Sample]:
        cfg = self.settings
        proc, root, me = Path(cfg.proc_root), Path(cfg.cgroup_root), os.getpid()
        return {t.name: sample_target(t, proc, root, me) for t in cfg.targets}

    async def check(self) -> Reading:
        cfg = self.settings
        docker_here = False
        if self.docker_socket:
            docker_here = await asyncio.to_thread(Path(self.docker_socket).exists)
        if docker_here:
            raise Unavailable("the Docker socket is there: the docker probe reports memory")
        if not cfg.targets:
            raise Unavailable("no processes configured (probes.processes.targets)")
        if not await asyncio.to_thread(Path(cfg.proc_root).is_dir):
            raise ProbeError(f"{cfg.proc_root} is not readable here")
        m0 = time.monotonic()
        first = await asyncio.to_thread(self._sample_all)
        latency_ms = (time.monotonic() - m0) * 1000
        await asyncio.sleep(cfg.cpu_sample_s)
        m1 = time.monotonic()
        second = await asyncio.to_thread(self._sample_all)
        return processes_reading(cfg.targets, first, second, m1 - m0, latency_ms, cfg.memory_warn_ratio)
