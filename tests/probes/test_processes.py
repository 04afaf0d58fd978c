"""The processes probe (probes/processes.py): memory and CPU per process, unit or cgroup where there is
no Docker socket. Against fixture trees of cgroup v2, cgroup v1 and /proc with known numbers, and
against this machine's real /proc and cgroup files with processes of known size and load."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from opsdash.config import ConfigError, load_config
from probes.config import ProcessesProbeConfig, ProcessTarget
from probes.core import Unavailable
from probes.processes import (
    NO_LIMIT_V1,
    ProcessesProbe,
    cgroup_of,
    find_unit,
    processes_reading,
    read_cgroup,
    sample_target,
)
from telemetry_bus.contract import encode, topics
from tests.bus.simulate import ROOT, new_fold

MiB = 2**20
T0 = 1_000_000.0


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- fixture trees ---------------------------------------------------------------------------------

def cgroup_v2(root: Path, rel: str, current: int, inactive: int, limit: str, usage_usec: int,
              procs: str = "101\n102\n") -> Path:
    write(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    d = root / rel
    write(d / "memory.current", f"{current}\n")
    write(d / "memory.stat", f"anon {current - inactive}\nfile {inactive}\ninactive_file {inactive}\n"
                             f"active_file 0\n")
    write(d / "memory.max", f"{limit}\n")
    write(d / "cpu.stat", f"usage_usec {usage_usec}\nuser_usec 1\nsystem_usec 2\n")
    write(d / "cgroup.procs", procs)
    return d


def test_cgroup_v2_unit_memory_without_cache_limit_and_cpu(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    d = cgroup_v2(root, "system.slice/ingest.service", 300 * MiB, 50 * MiB, str(512 * MiB), 10_000_000)
    target = ProcessTarget(name="ingest-1", service="ingest", unit="ingest.service")
    first = sample_target(target, tmp_path / "proc", root, 1)
    write(d / "cpu.stat", "usage_usec 10500000\n")  # + 0.5 s of CPU
    second = sample_target(target, tmp_path / "proc", root, 1)
    r = processes_reading([target], {"ingest-1": first}, {"ingest-1": second}, 1.0, 1.0, 0.9)
    row = r.details["containers"][0]
    assert row["mem_bytes"] == 250 * MiB  # memory.current - inactive_file, like docker stats
    assert row["mem_limit_bytes"] == 512 * MiB
    assert row["cpu_pct"] == 50.0  # half a core
    assert (row["state"], row["service"], row["source"], row["pids"]) == ("running", "ingest", "cgroup v2", 2)
    assert row["where"] == "/system.slice/ingest.service"
    assert r.metrics == {"processes_running": 1, "processes_total": 1, "cpu_pct_total": 50.0,
                         "mem_bytes_total": 250 * MiB}
    assert r.warnings == ()
    # near the limit: degraded with a reason; "max" = no limit
    write(d / "memory.current", f"{500 * MiB}\n")
    third = sample_target(target, tmp_path / "proc", root, 1)
    r = processes_reading([target], {"ingest-1": second}, {"ingest-1": third}, 1.0, 1.0, 0.9)
    assert r.warnings == ("ingest-1 memory 88% of its limit",) or r.warnings == ()
    write(d / "memory.current", f"{520 * MiB}\n")
    r = processes_reading([target], {}, {"ingest-1": sample_target(target, tmp_path / "proc", root, 1)},
                          1.0, 1.0, 0.9)
    assert r.warnings == ("ingest-1 memory 92% of its limit",)
    assert r.details["containers"][0]["cpu_pct"] is None  # one sample: CPU unknown, not 0
    write(d / "memory.max", "max\n")
    assert read_cgroup(root, "system.slice/ingest.service").mem_limit_bytes is None


def test_units_are_found_in_nested_slices_and_a_missing_one_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    cgroup_v2(root, "user.slice/user-1000.slice/user@1000.service/app.slice/sim.service", 10 * MiB, 0,
              "max", 1)
    assert find_unit(root, "sim.service") == "user.slice/user-1000.slice/user@1000.service/app.slice/sim.service"
    missing = ProcessTarget(name="gone", unit="gone.service")
    r = processes_reading([missing], {}, {"gone": sample_target(missing, tmp_path, root, 1)}, 1.0, 1.0, 0.9)
    assert r.details["containers"][0]["state"] == "not found"
    assert r.details["containers"][0]["mem_bytes"] is None  # unknown, never 0
    assert r.warnings == ("gone: unit gone.service: no cgroup found",)
    assert r.metrics["processes_running"] == 0


def test_cgroup_v1_memory_controller_and_cpuacct(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    d = root / "memory" / "system.slice" / "delivery.service"
    write(d / "memory.usage_in_bytes", f"{200 * MiB}\n")
    write(d / "memory.stat", f"cache {40 * MiB}\nrss {160 * MiB}\ntotal_inactive_file {30 * MiB}\n")
    write(d / "memory.limit_in_bytes", "9223372036854771712\n")
    write(d / "cgroup.procs", "7\n")
    acct = root / "cpuacct" / "system.slice" / "delivery.service" / "cpuacct.usage"
    write(acct, "5000000000\n")  # ns
    target = ProcessTarget(name="delivery-1", service="delivery", unit="delivery.service")
    first = sample_target(target, tmp_path / "proc", root, 1)
    write(acct, "7000000000\n")  # + 2 s of CPU in 1 s: two cores
    second = sample_target(target, tmp_path / "proc", root, 1)
    row = processes_reading([target], {"delivery-1": first}, {"delivery-1": second}, 1.0, 1.0,
                            0.9).details["containers"][0]
    assert (row["mem_bytes"], row["mem_limit_bytes"], row["cpu_pct"], row["source"]) == (
        170 * MiB, None, 200.0, "cgroup v1")
    write(d / "memory.limit_in_bytes", f"{256 * MiB}\n")
    assert read_cgroup(root, "/system.slice/delivery.service").mem_limit_bytes == 256 * MiB
    assert NO_LIMIT_V1 < 9223372036854771712


def fake_proc(proc: Path, pid: int, cmdline: list[str], rss_kb: int | None, ticks: tuple[int, int],
              ppid: int = 1, cgroup: str = "0::/system.slice/sim.service\n", comm: str = "python3") -> None:
    d = proc / str(pid)
    write(d / "cmdline", "\0".join(cmdline) + "\0")
    status = f"Name:\t{comm}\nState:\tS (sleeping)\nPPid:\t{ppid}\n"
    if rss_kb is not None:
        status += f"VmRSS:\t{rss_kb} kB\n"
    write(d / "status", status)
    # fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    write(d / "stat", f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194304 10 0 0 0 {ticks[0]} {ticks[1]} "
                      f"0 0 20 0 1 0 100 1000 100\n")
    write(d / "cgroup", cgroup)


def test_proc_match_sums_processes_and_takes_the_shared_cgroup_limit(tmp_path: Path) -> None:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    cgroup_v2(root, "system.slice/sim.service", 0, 0, str(1024 * MiB), 0)
    sim = ["python", "-m", "opsdash.simulator", "instance", "--service", "ingest", "--index", "1", "--x"]
    fake_proc(proc, 101, sim, 100 * 1024, (100, 50))
    fake_proc(proc, 102, [*sim[:-1], "--y"], 20 * 1024, (10, 0), comm="weird ) name")  # parens in comm
    fake_proc(proc, 103, [*sim[:7], "10", "--x"], 999 * 1024, (0, 0))  # --index 10: not ours
    fake_proc(proc, 2, [], None, (0, 0), ppid=0, comm="kthreadd")  # kernel thread: no cmdline, no RSS
    target = ProcessTarget(name="ingest-1", service="ingest",
                           match=r"opsdash\.simulator instance --service ingest --index 1 ")
    first = sample_target(target, proc, root, own_pid=999)
    fake_proc(proc, 101, sim, 100 * 1024, (150, 75))  # + 75 ticks = 0.75 s at 100 Hz
    second = sample_target(target, proc, root, own_pid=999)
    row = processes_reading([target], {"ingest-1": first}, {"ingest-1": second}, 1.5, 1.0,
                            0.9).details["containers"][0]
    assert row["mem_bytes"] == 120 * MiB and row["pids"] == 2 and row["source"] == "proc"
    assert row["mem_limit_bytes"] == 1024 * MiB
    clk = os.sysconf("SC_CLK_TCK")
    assert row["cpu_pct"] == pytest.approx(75 / clk / 1.5 * 100, abs=0.01)
    # the probe's own process never matches (its own command line may hold the pattern)
    assert sample_target(target, proc, root, own_pid=101).pids == 1
    # another copy of the program elsewhere on the host: only the supervisor's own children count
    fake_proc(proc, 300, ["supervisor"], 1024, (0, 0))
    fake_proc(proc, 301, ["python", "wrapper"], 1024, (0, 0), ppid=300)
    fake_proc(proc, 101, sim, 100 * 1024, (150, 75), ppid=301)
    mine = ProcessTarget(name="ingest-1", match=target.match, under_pid=300)
    s = sample_target(mine, proc, root, own_pid=999)
    assert (s.pids, s.mem_bytes) == (1, 100 * MiB), s


def test_pid_file_with_descendants_like_postgres(tmp_path: Path) -> None:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    write(root / "memory" / ".keep", "")  # a v1 host
    fake_proc(proc, 500, ["/usr/lib/postgresql/15/bin/postgres", "-D", "/data"], 30 * 1024, (1, 1),
              cgroup="4:memory:/pg\n")
    fake_proc(proc, 501, ["postgres: checkpointer"], 5 * 1024, (0, 0), ppid=500, cgroup="4:memory:/pg\n")
    fake_proc(proc, 502, ["postgres: client backend"], 7 * 1024, (0, 0), ppid=501, cgroup="4:memory:/pg\n")
    fake_proc(proc, 600, ["other"], 1000 * 1024, (0, 0))
    write(tmp_path / "postmaster.pid", "500\n/data\n")
    target = ProcessTarget(name="postgres", pid_file=str(tmp_path / "postmaster.pid"), tree=True)
    s = sample_target(target, proc, root, own_pid=1)
    assert (s.mem_bytes, s.pids) == (42 * MiB, 3)
    assert cgroup_of(proc, 500, v2=False) == "/pg"
    alone = ProcessTarget(name="postgres", pid_file=str(tmp_path / "postmaster.pid"))
    assert sample_target(alone, proc, root, own_pid=1).mem_bytes == 30 * MiB
    missing = ProcessTarget(name="x", pid_file=str(tmp_path / "nope.pid"))
    s = sample_target(missing, proc, root, own_pid=1)
    assert not s.found and "nope.pid: not found" in str(s.error)


def test_configuration_names_the_bad_key() -> None:
    with pytest.raises(msgspec.ValidationError, match="exactly one of"):
        msgspec.convert({"name": "a", "unit": "a.service", "match": "a"}, ProcessTarget)
    with pytest.raises(msgspec.ValidationError, match="not a regular expression"):
        msgspec.convert({"name": "a", "match": "("}, ProcessTarget)
    with pytest.raises(msgspec.ValidationError, match="unique"):
        msgspec.convert({"targets": [{"name": "a", "pid": 1}, {"name": "a", "pid": 2}]}, ProcessesProbeConfig)
    with pytest.raises(ConfigError, match=r"probes\.processes\.targets"):
        load_config(env={"OPSDASH_PROBES__PROCESSES__TARGETS": '[{name = "a", pid = "x"}]'})
    cfg = load_config(env={"OPSDASH_PROBES__PROCESSES__TARGETS":
                           '[{name = "ingest-1", service = "ingest", unit = "ingest@1.service"}]'})
    assert cfg.probes.processes.targets[0].unit == "ingest@1.service"


async def test_with_a_docker_socket_the_docker_probe_reports_memory(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    sock.write_text("")
    probe = ProcessesProbe(ProcessesProbeConfig(targets=[ProcessTarget(name="a", pid=os.getpid())]),
                           docker_socket=str(sock))
    with pytest.raises(Unavailable, match="docker probe"):
        await probe.check()
    with pytest.raises(Unavailable, match="no processes configured"):
        await ProcessesProbe(ProcessesProbeConfig(), docker_socket=str(tmp_path / "none")).check()


# -- this machine ----------------------------------------------------------------------------------

@pytest.fixture
def children() -> Iterator[tuple[str, subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """Two real processes: one holding 160 MiB (every page written), one spinning on a core."""
    marker = f"opsdash-test-{uuid.uuid4().hex[:12]}"
    hold = subprocess.Popen([sys.executable, "-c",
                             "import sys, time\nb = bytearray(160 * 2**20)\n"
                             "for i in range(0, len(b), 4096): b[i] = 1\n"
                             "print('ready', flush=True)\ntime.sleep(600)", f"{marker}-hold"],
                            stdout=subprocess.PIPE)
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass", f"{marker}-spin"])
    try:
        assert hold.stdout is not None and hold.stdout.readline().strip() == b"ready"
        yield marker, hold, spin
    finally:
        for p in (hold, spin):
            p.kill()
            p.wait()


async def test_real_processes_memory_and_cpu(
        children: tuple[str, subprocess.Popen[bytes], subprocess.Popen[bytes]]) -> None:
    marker, hold, spin = children
    cfg = ProcessesProbeConfig(cpu_sample_s=1.0, targets=[
        ProcessTarget(name="hold", service="test", match=f"{marker}-hold"),
        ProcessTarget(name="spin", service="test", pid=spin.pid),
        ProcessTarget(name="gone", service="test", match=f"{marker}-nothing")])
    def cpu_s(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before, t_before = cpu_s(spin.pid), time.monotonic()
    reading = await ProcessesProbe(cfg).check()
    after, t_after = cpu_s(spin.pid), time.monotonic()
    rows = {r["name"]: r for r in reading.details["containers"]}
    # ground truth: 160 MiB written by the child, plus the interpreter (~10-30 MiB)
    assert 160 * MiB <= rows["hold"]["mem_bytes"] <= 160 * MiB + 60 * MiB, rows["hold"]
    assert rows["hold"]["pids"] == 1 and rows["hold"]["source"] == "proc"
    assert rows["hold"]["cpu_pct"] < 20
    # the spinner's CPU over the probe's ~1 s window: no more than it used around the whole check
    # (read from the kernel here), and clearly running (the 2 cores are shared: no exact figure)
    spin_pct = rows["spin"]["cpu_pct"]
    assert spin_pct > 5 and spin_pct > rows["hold"]["cpu_pct"], rows
    assert spin_pct / 100 * 1.0 <= (after - before) + 0.03, (spin_pct, after - before, t_after - t_before)
    assert rows["gone"]["state"] == "not found" and rows["gone"]["mem_bytes"] is None
    assert reading.metrics["processes_running"] == 2 and reading.metrics["processes_total"] == 3
    # VmRSS from /proc agrees with the kernel's page count in statm
    pages = int(Path(f"/proc/{hold.pid}/statm").read_text().split()[1])
    assert abs(rows["hold"]["mem_bytes"] - pages * os.sysconf("SC_PAGE_SIZE")) < 4 * MiB


def test_real_cgroup_of_this_process() -> None:
    root = Path("/sys/fs/cgroup")
    v2 = (root / "cgroup.controllers").exists()
    rel = cgroup_of(Path("/proc"), os.getpid(), v2)
    assert rel is not None, Path("/proc/self/cgroup").read_text()
    d = root / rel.strip("/") if v2 else root / "memory" / rel.strip("/")
    usage_file = d / ("memory.current" if v2 else "memory.usage_in_bytes")
    if not usage_file.exists():
        pytest.skip(f"no memory accounting for {rel} here ({usage_file} missing)")
    before = int(usage_file.read_text())
    s = read_cgroup(root, rel, Path("/proc"))
    after = int(usage_file.read_text())
    assert s.found and s.source == ("cgroup v2" if v2 else "cgroup v1")
    assert s.pids >= 1
    # usage without the inactive page cache: positive and at most the raw usage around the read
    assert s.mem_bytes is not None and 0 < s.mem_bytes <= max(before, after) + 64 * MiB
    assert s.cpu_us, "no CPU figure for this cgroup"


def test_the_capacity_section_takes_the_processes_where_docker_is_unavailable() -> None:
    fold = new_fold(T0)
    docker = {"ts": T0, "status": "unknown", "period_s": 10, "error": "unavailable: no docker socket"}
    rows = [{"name": "ingest-1", "service": "ingest", "state": "running", "cpu_pct": 3.5,
             "mem_bytes": 80 * MiB, "mem_limit_bytes": None, "source": "proc", "pids": 1}]
    processes = {"ts": T0, "status": "healthy", "period_s": 5, "latency_ms": 4.0,
                 "metrics": {"processes_running": 1, "processes_total": 1, "cpu_pct_total": 3.5,
                             "mem_bytes_total": 80 * MiB},
                 "details": {"containers": rows}}
    fold.feed(topics.probe(ROOT, "docker"), encode(docker), T0)
    fold.feed(topics.probe(ROOT, "processes"), encode(processes), T0)
    view = fold.tick(T0 + 1).view
    mem = view["capacity"]["memory"]
    assert mem["available"] is True and mem["source"] == "processes"
    assert mem["containers"][0]["mem_bytes"] == 80 * MiB and mem["running"] == 1 and mem["total"] == 1
    assert "processes" not in view["health"]["components"]  # a capacity probe, not a health tile
    # with Docker's containers the docker probe wins
    docker_ok = {"ts": T0 + 1, "status": "healthy", "period_s": 10, "metrics": {"containers_running": 1,
                 "containers_total": 1}, "details": {"containers": [{"name": "c", "mem_bytes": 1}]}}
    fold.feed(topics.probe(ROOT, "docker"), encode(docker_ok), T0 + 1)
    mem = fold.tick(T0 + 2).view["capacity"]["memory"]
    assert mem["source"] == "docker" and mem["containers"] == [{"name": "c", "mem_bytes": 1}]
