"""InfluxDB 3 probe (httpx): ``/health`` with the token, ``/ping`` for the version, recent writes by
SQL, and the Parquet file count against the query file limit plus the data size.

Files: from the data directory when the probe can read it (``probes.influxdb.data_dir``; Parquet files
live under ``<node>/dbs/<db_id>/<table_id>/...``), else from ``system.parquet_files``. The query file
limit applies per table and query, so the fullest table is what "near the limit" is judged on
(``file_count_max_table``); ``file_count`` is the total.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from probes.config import InfluxProbeConfig
from probes.core import ProbeError, Reading, Unavailable, num
from probes.fs import scan
from probes.http import body_error, http_error, tls_context

__all__ = ["InfluxFiles", "InfluxProbe", "count_parquet", "influx_reading"]


@dataclass(slots=True)
class InfluxFiles:
    file_count: int = 0
    data_bytes: int = 0
    per_table: Counter[str] = field(default_factory=Counter)
    complete: bool = True
    source: str = "data_dir"


def count_parquet(data_dir: str, budget_s: float) -> InfluxFiles:
    """Blocking: Parquet files per table under ``data_dir`` and the directory's disk usage."""
    out = InfluxFiles()

    def visit(path: str, _st: os.stat_result) -> None:
        if not path.endswith(".parquet"):
            return
        parts = os.path.relpath(path, data_dir).split(os.sep)
        if len(parts) >= 5 and parts[1] == "dbs":  # <node>/dbs/<db>/<table>/...
            out.file_count += 1
            out.per_table[f"{parts[0]}/{parts[2]}/{parts[3]}"] += 1

    result = scan(data_dir, time.monotonic() + budget_s, visit)
    out.data_bytes = result.disk_bytes
    out.complete = result.complete
    return out


def influx_reading(*, latency_ms: float, ping: Mapping[str, Any] | str, recent: float | str | None,
                   files: InfluxFiles | str | None, cfg: InfluxProbeConfig) -> Reading:
    """Pure: raw answers (or the error string of each optional part) -> metrics and warnings."""
    warnings: list[str] = []
    details: dict[str, Any] = {}
    if isinstance(ping, str):
        warnings.append(f"/ping: {ping}")
    else:
        details["version"] = ping.get("version")
        if ping.get("product_name"):
            details["product"] = ping["product_name"]
        if ping.get("build"):
            details["build"] = ping["build"]
    if isinstance(recent, str):
        warnings.append(f"recent writes: {recent}")
        recent = None
    metrics: dict[str, float | int | None] = {
        "file_count": None, "file_limit": cfg.file_limit, "data_bytes": None,
        "recent_writes": recent, "file_count_max_table": None,
    }
    if isinstance(files, str):
        warnings.append(f"files: {files}")
    elif files is not None:
        biggest = max(files.per_table.values(), default=0)
        metrics.update(file_count=files.file_count, data_bytes=files.data_bytes,
                       file_count_max_table=biggest)
        details["files_source"] = files.source
        details["largest_tables_by_files"] = [{"table": t, "files": n}
                                              for t, n in files.per_table.most_common(5)]
        if not files.complete:
            warnings.append("data directory too large to count within the time budget (lower bound)")
        if biggest > cfg.file_warn_ratio * cfg.file_limit:
            warnings.append(f"{biggest} Parquet files in one table, near the query file limit "
                            f"{cfg.file_limit} (queries over all of it will fail)")
    return Reading(latency_ms=latency_ms, metrics=metrics, details=details, warnings=tuple(warnings))


class InfluxProbe:
    """The ``influxdb`` target."""

    target = "influxdb"

    def __init__(self, settings: InfluxProbeConfig, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.transport = transport
        self.tls = tls_context()

    async def _sql(self, client: httpx.AsyncClient, q: str) -> list[dict[str, Any]] | str:
        try:
            r = await client.get("/api/v3/query_sql",
                                 params={"db": self.settings.database, "q": q, "format": "json"})
        except httpx.HTTPError as exc:
            return str(http_error(exc, self.settings.url))
        if r.status_code != 200:
            return f"HTTP {r.status_code}: {body_error(r)}"
        try:
            rows = r.json()
        except ValueError:
            return "answer is not JSON (truncated stream?)"
        return rows if isinstance(rows, list) else "answer is not a JSON array"

    async def check(self) -> Reading:
        cfg = self.settings
        if not cfg.url:
            raise Unavailable("not configured (probes.influxdb.url)")
        headers = {"Authorization": f"Bearer {cfg.token}"} if cfg.token else {}
        async with httpx.AsyncClient(base_url=cfg.url, headers=headers, timeout=cfg.timeout_s,
                                     transport=self.transport, verify=self.tls) as client:
            t0 = time.perf_counter()
            try:
                r = await client.get("/health")
            except httpx.HTTPError as exc:
                raise http_error(exc, cfg.url) from exc
            latency_ms = (time.perf_counter() - t0) * 1000
            if r.status_code == 401:
                hint = "wrong token" if cfg.token else "no token configured (probes.influxdb.token)"
                raise ProbeError(f"unauthorized: /health needs a valid token: {hint}: {body_error(r)}")
            if r.status_code == 403:
                raise ProbeError(f"forbidden: the token may not read /health: {body_error(r)}")
            if r.status_code != 200 or r.text.strip() != "OK":
                raise ProbeError(f"/health answered HTTP {r.status_code}: {body_error(r)}")

            ping: dict[str, Any] | str
            try:
                p = await client.get("/ping")
                if p.status_code != 200:
                    ping = f"HTTP {p.status_code}: {body_error(p)}"
                else:
                    is_json = p.headers.get("content-type", "").startswith("application/json")
                    body = p.json() if is_json else {}
                    ping = {"version": body.get("version") or p.headers.get("x-influxdb-version"),
                            "product_name": body.get("product_name"),
                            "build": p.headers.get("x-influxdb-build")}
            except (httpx.HTTPError, ValueError) as exc:
                ping = str(exc)

            rows = await self._sql(client, cfg.recent_writes_sql)
            recent: float | str | None
            if isinstance(rows, str):
                recent = rows
            elif not rows:
                recent = 0
            else:
                first = next(iter(rows[0].values()), None)
                value = num(first)
                recent = value if value is not None else f"not a number: {first!r}"

            files: InfluxFiles | str
            if cfg.data_dir:
                if not await asyncio.to_thread(os.path.isdir, cfg.data_dir):
                    files = f"data_dir {cfg.data_dir} is not a readable directory"
                else:
                    files = await asyncio.to_thread(count_parquet, cfg.data_dir, cfg.walk_budget_s)
            else:
                prow = await self._sql(client, "SELECT table_name, count(*) AS files, "
                                               "sum(size_bytes) AS bytes FROM system.parquet_files "
                                               "GROUP BY table_name")
                if isinstance(prow, str):
                    files = f"system.parquet_files: {prow}"
                else:
                    files = InfluxFiles(source="system.parquet_files")
                    for row in prow:
                        n = int(num(row.get("files")) or 0)
                        files.file_count += n
                        files.data_bytes += int(num(row.get("bytes")) or 0)
                        files.per_table[str(row.get("table_name"))] += n
        return influx_reading(latency_ms=latency_ms, ping=ping, recent=recent, files=files, cfg=cfg)
