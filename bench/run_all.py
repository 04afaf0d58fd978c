"""Run every benchmark and print one table of figures with their aims.

    .venv/bin/python bench/run_all.py [--quick] [--out bench/last-run]

Runs, one after the other (never in parallel: the machine has 2 shared cores):

- bench/bench_bus.py            fold rate vs bare aiomqtt and mosquitto_sub; reporter cost per call
- bench/bench_patch_bytes.py      bytes per client of the patch stream on the real fold vs polling REST
- bench/bench_gateway_fanout.py WebSocket fan-out vs bare broadcast() (a modest client count), bytes
                                vs REST polling
- bench/bench_platform_counts.py one platform-counts probe cycle on 1 M devices (PostgreSQL on
                                127.0.0.1:5432, or a private one started from the machine's binaries)
- quantile error (here): telemetry_bus.histogram.ExpHistogram on lognormal and bimodal samples vs
                                the exact nearest-rank percentiles
- bench/bench_e2e.py            freshness, crash/stall detection, 2,000 instances x 20 series

Each script's whole output is kept in ``--out`` (one .txt per script, plus e2e.json); the table takes
its figures from those outputs, so every number in it comes from this run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


Row = tuple[str, str, str, str]


def run(name: str, args: list[str], out: Path, timeout: float) -> str:
    print(f"== {name}: {' '.join(args)}", flush=True)
    t = time.monotonic()
    try:
        p = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                           timeout=timeout, check=False)
        text = p.stdout + (f"\n[stderr]\n{p.stderr[-4000:]}" if p.returncode else "")
        status = f"exit {p.returncode}"
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or "") + "\n[timeout]"
        status = "timeout"
    (out / f"{name}.txt").write_text(text)
    print(f"   {status} after {time.monotonic() - t:.0f} s", flush=True)
    return text


def exact_pct(sorted_v: list[float], q: float) -> float:
    return sorted_v[max(1, math.ceil(q * len(sorted_v))) - 1]


def quantile_error(n: int = 200_000) -> list[Row]:
    """Window quantiles through the wire path (bench_quantiles.py), before and now, vs exact."""
    from bench.bench_quantiles import DATA_SETS
    from bench.bench_quantiles import run as run_quantiles
    from telemetry_bus.histogram import REPORTER_MAX_BUCKETS, WINDOW_MAX_BUCKETS
    instances, seconds = 20, 60
    per_second = max(1, n // (instances * seconds))
    rows = []
    for name, draw in DATA_SETS.items():
        old = run_quantiles(draw, 320, 320, instances, per_second, seconds)
        worst, scale, _wire, _ms, bound = run_quantiles(draw, REPORTER_MAX_BUCKETS, WINDOW_MAX_BUCKETS,
                                                        instances, per_second, seconds)
        rows.append((f"quantile error, {name}, {instances * per_second * seconds:,} values via 1 s wire "
                     f"deltas, p50..p99.9",
                     f"max {100 * worst:.3f} % at scale {scale} (before: {100 * old[0]:.3f} % at scale "
                     f"{old[1]}; ratio {worst / old[0]:.2f}x)",
                     f"<= 1 % (bound at scale {scale}: {100 * bound:.2f} %)",
                     "yes" if worst <= min(0.01, bound) else "NO"))
    return rows


def bus_rows(text: str) -> list[Row]:
    rows: list[Row] = []
    rates = {}
    for line in text.splitlines():
        m = re.match(r"(mosquitto_sub|bare aiomqtt|aiomqtt iter \+ fold|aggregator|fold alone \(pure\))\s+"
                     r"([\d,]+)\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            rates[m.group(1)] = (m.group(2), float(m.group(3)), float(m.group(4)))
        m = re.match(r"(rep\.\w+|bare dict \+= 1)\s+([\d.]+)\s+([\d.]+)", line)
        if m and m.group(1) != "bare dict += 1":
            us = float(m.group(2))
            rows.append((f"reporter {m.group(1)} cost", f"{us:.3f} us/call ({m.group(3)}x a bare dict +=)",
                         "<= 2 us", "yes" if us <= 2 else "NO"))
    head = [ln for ln in text.splitlines() if ln.startswith("# bus benchmark")]
    out: list[Row] = []
    for k, (v, vs_sub, vs_bare) in rates.items():
        aim, ok = "-", "-"
        if k == "aggregator":
            aim, ok = ">= 0.8x bare aiomqtt", "yes" if vs_bare >= 0.8 else "NO"
        out.append((f"bus receive rate: {k}", f"{v} msg/s ({vs_sub:.2f}x mosquitto_sub, {vs_bare:.2f}x bare "
                    "aiomqtt)", aim, ok))
    if not out:
        out.append(("bus benchmark", "no figures (see bench_bus.txt)", "-", "NO"))
    elif head:
        out.insert(0, ("bus benchmark setup", head[0].split(", ", 2)[-1], "-", "-"))
    return out + rows


def fanout_rows(text: str) -> list[Row]:
    rows: list[Row] = []
    for line in text.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            rows.append((f"fan-out {r['clients']} clients, {r['kind']}",
                         f"delivered {r['delivered']}/{r['expected']}, p50 {r['p50_ms']:.1f} ms, p99 "
                         f"{r['p99_ms']:.1f} ms, CPU {r['cpu_pct']:.0f} %, RSS {r['rss_mb']:.0f} MB",
                         "-", "-"))
        m = re.match(r"(\d+) clients: gateway/bare p50 ([\d.]+)x, p99 ([\d.]+)x, CPU ([\d.]+)x", line)
        if m:
            rows.append((f"fan-out {m.group(1)} clients: gateway vs bare broadcast()",
                         f"p50 {m.group(2)}x, p99 {m.group(3)}x, CPU {m.group(4)}x", "-", "-"))
        if line.startswith("patch stream"):
            m = re.search(r"([\d.]+)x \(([\d.]+)x of gzipped", line)
            value = (line.split(": ", 1)[-1] if m is None
                     else f"{m.group(1)}x ({m.group(2)}x of gzipped polling)")
            rows.append(("bytes: patch stream vs polling 5 REST endpoints/s", value, "< 1x",
                         "yes" if m and float(m.group(1)) < 1 else "NO"))
    return rows or [("fan-out benchmark", "no figures (see bench_gateway_fanout.txt)", "-", "NO")]


def bytes_rows(text: str, errors_per_s: str) -> list[Row]:
    rows: list[Row] = []
    for line in text.splitlines():
        m = re.match(r"(patch, the five REST sections \(\+meta\)|patch, every section \(\+series\))\s+"
                     r"([\d,]+)\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            five = m.group(1).startswith("patch, the five")
            rows.append((f"bytes, real fold, {errors_per_s} error/s: {m.group(1)}",
                         f"{m.group(2)} B/client/s = {m.group(3)}x polling the 5 REST endpoints "
                         f"({m.group(4)}x of gzipped polling)",
                         "<= 0.10x polling" if five else "-",
                         ("yes" if float(m.group(3)) <= 0.10 else "NO") if five else "-"))
    return rows or [("bytes benchmark", "no figures (see bench_patch_bytes*.txt)", "-", "NO")]


def platform_rows(text: str) -> list[Row]:
    m = re.search(r"cycle over (\d+) runs: median ([\d.]+) ms, p95 ([\d.]+) ms, max ([\d.]+) ms", text)
    if not m:
        return [("platform counts, 1 M devices", "no figures (see bench_platform_counts.txt)", "p95 < 200 ms",
                 "NO")]
    p95 = float(m.group(3))
    return [(f"platform counts probe cycle, 1 M devices ({m.group(1)} cycles)",
             f"median {m.group(2)} ms, p95 {p95:.1f} ms, max {m.group(4)} ms", "p95 < 200 ms",
             "yes" if p95 < 200 else "NO")]


def postgres_dsn(workdir: Path) -> tuple[str, Any]:
    """The machine's PostgreSQL on 5432 if one listens, else a private cluster (stopped afterwards)."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return "postgresql://postgres@127.0.0.1:5432/postgres", None
    except OSError:
        from opsdash.servers import PrivatePostgres

        pg = PrivatePostgres(workdir / "pg").start()
        return pg.admin_dsn, pg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "last-run"))
    ap.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the scripts)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["bus", "fanout", "platform", "e2e"])
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    t0 = time.monotonic()
    rows: list[Row] = []
    if "bus" not in a.skip:
        n = "20000" if a.quick else "100000"
        rows += bus_rows(run("bench_bus", ["bench/bench_bus.py", "--messages", n, "--runs", "3"], out, 900))
    if "fanout" not in a.skip:
        clients = ["200"] if a.quick else ["1000"]
        rows += fanout_rows(run("bench_gateway_fanout", ["bench/bench_gateway_fanout.py", "--clients",
                                                         *clients, "--ticks", "10"], out, 900))
    if "fanout" not in a.skip:
        for eps in ("0", "1", "5"):
            args = ["bench/bench_patch_bytes.py", "--errors-per-s", eps]
            rows += bytes_rows(run(f"bench_patch_bytes_{eps}", args, out, 300), eps)
    if "platform" not in a.skip:
        with tempfile.TemporaryDirectory() as tmp:
            dsn, pg = postgres_dsn(Path(tmp))
            try:
                devices = "100000" if a.quick else "1000000"
                args = ["bench/bench_platform_counts.py", "--dsn", dsn, "--devices", devices]
                rows += platform_rows(run("bench_platform_counts", args, out, 1200))
            finally:
                if pg is not None:
                    pg.stop()
    rows += quantile_error(20_000 if a.quick else 200_000)
    if "e2e" not in a.skip:
        e2e_args = ["bench/bench_e2e.py", "--profile", "--json", str(out / "e2e.json")]
        if a.quick:
            e2e_args += ["--fresh-samples", "10", "--kills", "3", "--stalls", "1", "--scale-instances", "200",
                         "--scale-seconds", "10", "--scale-fresh-samples", "5"]
        run("bench_e2e", e2e_args, out, 1200)
        try:
            res = json.loads((out / "e2e.json").read_text())
            rows += [tuple(r) for r in res["rows"]]  # type: ignore[misc]
        except (OSError, ValueError, KeyError):
            rows.append(("end-to-end benchmark", "no figures (see bench_e2e.txt)", "-", "NO"))
    lines = [f"# opsdash benchmarks, {started}, {os.cpu_count()} cores (shared with other work: noisy), "
             f"{time.monotonic() - t0:.0f} s, command: .venv/bin/python bench/run_all.py"
             + (" --quick" if a.quick else ""), "",
             "| figure | value | aim | met |", "|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows]
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    print()
    print(table)


if __name__ == "__main__":
    main()
