"""Configuration of the probes (design.md section 6), decoded by ``opsdash.config`` from TOML/env.

One sub-Struct per probe under ``[probes.<target>]``; each has ``enabled``, ``period_s``,
``timeout_s``, ``latency_budget_ms`` (slower than this is "degraded") and ``retry_s`` (how soon a failed
check is repeated, so "down after two failures in a row" does not take two whole periods), plus its
target settings. Every key can be overridden from the environment, e.g.
``OPSDASH_PROBES__PLATFORM__TIMEZONE=Europe/Berlin`` or ``OPSDASH_PROBES__INFLUXDB__URL=http://influx:8181``.

``database_url`` (``OPSDASH_DATABASE_URL``) is the default of both ``postgres.url`` and ``platform.url``.
"""

from __future__ import annotations

import re
from typing import Annotated, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

__all__ = [
    "DiskProbeConfig",
    "DockerProbeConfig",
    "InfluxProbeConfig",
    "KeycloakProbeConfig",
    "MqttProbeConfig",
    "PlatformProbeConfig",
    "PostgresProbeConfig",
    "ProbeSettings",
    "ProbesConfig",
    "ProcessTarget",
    "ProcessesProbeConfig",
]

_TOPIC_RE: Final = re.compile(r"^[^#+\x00]{1,200}$")

# Ranges are declared with msgspec.Meta (the decoder names the key and the bound); __post_init__ keeps
# only the checks that relate two keys (a timeout within the period) or need more than a range.
PeriodS = Annotated[float, msgspec.Meta(ge=0.05, le=86400)]
TimeoutS = Annotated[float, msgspec.Meta(ge=0.01, le=86400)]
BudgetMs = Annotated[float, msgspec.Meta(gt=0)]
PositiveS = Annotated[float, msgspec.Meta(gt=0)]
Ratio = Annotated[float, msgspec.Meta(gt=0, le=1)]
TopN = Annotated[int, msgspec.Meta(ge=0, le=100)]

class ProbeSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every probe has: on/off, period, timeout, latency budget, retry delay after a failure."""

    enabled: bool = True
    period_s: PeriodS = 10.0
    timeout_s: TimeoutS = 5.0
    #: A check slower than this (``latency_ms``) is "degraded".
    latency_budget_ms: BudgetMs = 500.0
    #: After a failed check, the next one runs this soon (capped at ``period_s``).
    retry_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 1.0

    def __post_init__(self) -> None:
        if self.timeout_s > self.period_s:
            raise ValueError(f"timeout_s must be within 0.01..period_s ({self.period_s!r}), "
                             f"got {self.timeout_s!r}")
        if self.latency_budget_ms > self.timeout_s * 1000:
            raise ValueError(f"latency_budget_ms must be > 0 and <= timeout_s * 1000, "
                             f"got {self.latency_budget_ms!r}")


def _check_db_url(name: str, url: str) -> None:
    if url and urlsplit(url).scheme not in ("postgres", "postgresql"):
        raise ValueError(f"{name} must be a postgresql:// URL, got {url!r}")


def _check_http_url(name: str, url: str) -> None:
    if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
        raise ValueError(f"{name} must be an http(s):// URL, got {url!r}")


class PostgresProbeConfig(ProbeSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    latency_budget_ms: BudgetMs = 200.0
    #: Defaults to ``probes.database_url``. A ``pg_monitor`` role is enough.
    url: str = ""
    #: Connections above this fraction of the usable maximum make the probe "degraded".
    connections_warn_ratio: Ratio = 0.8
    largest_tables: TopN = 10
    #: Rows of ``slow_statements`` (from pg_stat_statements, when installed); 0 turns it off.
    slow_statements: TopN = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_db_url("url", self.url)


class PlatformProbeConfig(ProbeSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    period_s: PeriodS = 60.0
    timeout_s: TimeoutS = 10.0
    latency_budget_ms: BudgetMs = 2000.0
    #: Defaults to ``probes.database_url``.
    url: str = ""
    #: Statement timeout for every query of one cycle.
    statement_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 5000
    #: IANA zone that defines "today" for alerts closed/triggered today.
    timezone: str = "UTC"
    #: A device seen within this many seconds is online; every other registered device is stale.
    online_window_s: PositiveS = 300.0
    #: name -> SQL returning one row of metric columns; empty: the built-in queries
    #: (``probes.platform.DEFAULT_PLATFORM_QUERIES``, next to the code that runs them).
    queries: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_db_url("url", self.url)
        if self.statement_timeout_ms > self.timeout_s * 1000:
            raise ValueError(f"statement_timeout_ms must be within 1..timeout_s * 1000, "
                             f"got {self.statement_timeout_ms!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone must be an IANA time zone, got {self.timezone!r}") from None
        for name, sql in self.queries.items():
            if not sql.strip():
                raise ValueError(f"queries.{name} is empty, got {sql!r}")

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class MqttProbeConfig(ProbeSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    latency_budget_ms: BudgetMs = 200.0
    #: Defaults to the bus's ``mqtt.url`` (``OPSDASH_MQTT_URL``).
    url: str = ""
    #: Canary topic; default ``<root>/probe-canary/<client id>`` (outside the ``v1`` tree the
    #: aggregator folds, so a canary is never quarantined there).
    canary_topic: str = ""
    #: How long to wait for the retained ``$SYS`` figures after subscribing.
    sys_wait_s: PositiveS = 1.0
    #: A NATS server's monitoring endpoint (``http://nats:8222``), for NATS' MQTT listener, which
    #: has no ``$SYS`` tree: connections, message rates, slow consumers and cluster routes come from
    #: its ``/varz`` instead. Several comma-separated (the nodes of a cluster): the first that answers.
    nats_monitor_url: str = ""
    #: Nodes the NATS cluster should have (0: do not check); fewer connected routes is degraded.
    nats_cluster_size: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.url and urlsplit(self.url).scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"url must start with mqtt:// or mqtts://, got {self.url!r}")
        if self.canary_topic and not _TOPIC_RE.match(self.canary_topic):
            raise ValueError(f"canary_topic must be a topic name without wildcards, "
                             f"got {self.canary_topic!r}")
        for mon in filter(None, (u.strip() for u in self.nats_monitor_url.split(","))):
            if urlsplit(mon).scheme not in ("http", "https") or not urlsplit(mon).hostname:
                raise ValueError(f"nats_monitor_url must be http(s)://host:port, got {mon!r}")
        if self.sys_wait_s >= self.timeout_s:
            raise ValueError(f"sys_wait_s must be within 0..timeout_s, got {self.sys_wait_s!r}")


class InfluxProbeConfig(ProbeSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    latency_budget_ms: BudgetMs = 200.0
    #: e.g. ``http://influxdb:8181``; empty: the probe reports "not configured".
    url: str = ""
    #: Token (``Authorization: Bearer``); InfluxDB 3 needs one even for /health unless --disable-authz.
    token: str = ""
    database: str = "iotcloud"
    #: SQL for recent writes; must return one row whose first column is the count.
    recent_writes_sql: str = "SELECT COUNT(*) AS n FROM telemetry WHERE time > now() - INTERVAL '1 minute'"
    #: The server's data directory (``--data-dir``), when the probe can read it; else Parquet files
    #: are counted through ``system.parquet_files``.
    data_dir: str = ""
    #: The server's ``--query-file-limit`` (Core's default: 432 files per table per query).
    file_limit: Annotated[int, msgspec.Meta(ge=1)] = 432
    #: Parquet files of one table above this fraction of ``file_limit`` make the probe "degraded".
    file_warn_ratio: Ratio = 0.8
    #: Time budget for walking ``data_dir``.
    walk_budget_s: PositiveS = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_http_url("url", self.url)
        if self.walk_budget_s >= self.timeout_s:
            raise ValueError(f"walk_budget_s must be within 0..timeout_s, got {self.walk_budget_s!r}")


class KeycloakProbeConfig(ProbeSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    latency_budget_ms: BudgetMs = 500.0
    #: Management interface for ``/health/ready`` (port 9000 from Keycloak 25), e.g. ``http://kc:9000``.
    management_url: str = ""
    #: Main URL for the token endpoint and the admin API, e.g. ``http://kc:8080``; only with credentials.
    url: str = ""
    realm: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,100}$")] = "master"
    #: Confidential client with a service account holding realm-management ``view-realm``.
    client_id: str = ""
    client_secret: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_http_url("management_url", self.management_url)
        _check_http_url("url", self.url)
        if self.client_id and not self.url:
            raise ValueError(f"url is needed with client_id, got {self.url!r}")
        if bool(self.client_id) != bool(self.client_secret):
            raise ValueError(f"client_id and client_secret go together, got client_id {self.client_id!r}")

    def has_credentials(self) -> bool:
        return bool(self.client_id and self.client_secret)


class DockerProbeConfig(ProbeSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    timeout_s: TimeoutS = 8.0
    latency_budget_ms: BudgetMs = 4000.0
    socket: Annotated[str, msgspec.Meta(pattern=r"^/")] = "/var/run/docker.sock"
    api_version: Annotated[str, msgspec.Meta(pattern=r"^1\.\d{2}$")] = "1.43"
    #: Only containers of this compose project (label ``com.docker.compose.project``); empty: all.
    project: str = ""
    #: Gap between the two stats samples CPU % is computed from (like ``docker stats``).
    cpu_sample_s: PositiveS = 1.0
    #: A container using more than this fraction of its memory limit makes the probe "degraded".
    memory_warn_ratio: Ratio = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cpu_sample_s >= self.timeout_s:
            raise ValueError(f"cpu_sample_s must be within 0..timeout_s, got {self.cpu_sample_s!r}")


class DiskProbeConfig(ProbeSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    period_s: PeriodS = 30.0
    timeout_s: TimeoutS = 10.0
    latency_budget_ms: BudgetMs = 5000.0
    #: PostgreSQL's data directory (as mounted where the probe runs).
    postgres_data_dir: str = ""
    #: InfluxDB's ``--data-dir``.
    influxdb_data_dir: str = ""
    #: Other directories whose volume to watch (role ``other``).
    other_dirs: list[str] = msgspec.field(default_factory=list)
    #: A volume fuller than this percentage makes the probe "degraded".
    used_warn_pct: Annotated[float, msgspec.Meta(gt=0, le=100)] = 80.0
    #: Time budget for sizing all directories; past it the sizes are lower bounds (``dir_complete``).
    walk_budget_s: PositiveS = 3.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, path in self.dirs():
            if not path.startswith("/"):
                raise ValueError(f"{name} must be an absolute path, got {path!r}")
        if self.walk_budget_s >= self.timeout_s:
            raise ValueError(f"walk_budget_s must be within 0..timeout_s, got {self.walk_budget_s!r}")

    def dirs(self) -> list[tuple[str, str]]:
        """(role, path) of every configured directory."""
        out = [("postgres", self.postgres_data_dir), ("influxdb", self.influxdb_data_dir)]
        out += [("other", p) for p in self.other_dirs]
        return [(role, path) for role, path in out if path]


class ProcessTarget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One process, systemd unit or cgroup whose memory and CPU the processes probe reports.
    Exactly one of ``unit``, ``cgroup``, ``match``, ``pid``, ``pid_file``."""

    #: The row's name in the capacity section (like a container name, e.g. ``ingest-1``).
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    #: The service it belongs to (e.g. ``ingest``).
    service: str = ""
    #: A systemd unit (``ingest@1.service``): its cgroup, looked up under ``cgroup_root``.
    unit: str = ""
    #: A cgroup path under the (memory) hierarchy, e.g. ``/system.slice/ingest.service``.
    cgroup: str = ""
    #: A regular expression searched in each process's command line (arguments joined by spaces).
    match: str = ""
    pid: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: A file holding the pid in its first word (e.g. PostgreSQL's ``postmaster.pid``).
    pid_file: str = ""
    #: With ``pid`` / ``pid_file``: count the process's descendants too (PostgreSQL's backends).
    tree: bool = False
    #: With ``match``: only processes descending from this pid (a supervisor's own children, when
    #: another copy of the same program runs on the host).
    under_pid: Annotated[int, msgspec.Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        given = [k for k in ("unit", "cgroup", "match", "pid", "pid_file") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"name {self.name!r}: give exactly one of unit, cgroup, match, pid, pid_file "
                             f"(got {', '.join(given) or 'none'})")
        if self.match:
            try:
                re.compile(self.match)
            except re.error as exc:
                raise ValueError(f"match {self.match!r} is not a regular expression: {exc}") from None


class ProcessesProbeConfig(ProbeSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Memory and CPU per process / unit / cgroup where there is no Docker socket (probes/processes.py)."""

    period_s: PeriodS = 5.0
    timeout_s: TimeoutS = 4.0
    latency_budget_ms: BudgetMs = 2000.0
    targets: list[ProcessTarget] = msgspec.field(default_factory=list)
    proc_root: Annotated[str, msgspec.Meta(pattern=r"^/")] = "/proc"
    cgroup_root: Annotated[str, msgspec.Meta(pattern=r"^/")] = "/sys/fs/cgroup"
    #: Gap between the two samples CPU % is computed from.
    cpu_sample_s: PositiveS = 1.0
    #: A target using more than this fraction of its memory limit makes the probe "degraded".
    memory_warn_ratio: Ratio = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cpu_sample_s >= self.timeout_s:
            raise ValueError(f"cpu_sample_s must be within 0..timeout_s, got {self.cpu_sample_s!r}")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"targets: names must be unique, got {names!r}")


class ProbesConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The platform's PostgreSQL (``OPSDASH_DATABASE_URL``); default of ``postgres.url`` and ``platform.url``.
    database_url: str = ""
    postgres: PostgresProbeConfig = PostgresProbeConfig()
    platform: PlatformProbeConfig = PlatformProbeConfig()
    mqtt: MqttProbeConfig = MqttProbeConfig()
    influxdb: InfluxProbeConfig = InfluxProbeConfig()
    keycloak: KeycloakProbeConfig = KeycloakProbeConfig()
    docker: DockerProbeConfig = DockerProbeConfig()
    disk: DiskProbeConfig = DiskProbeConfig()
    processes: ProcessesProbeConfig = ProcessesProbeConfig()

    def __post_init__(self) -> None:
        _check_db_url("database_url", self.database_url)

    def postgres_url(self) -> str:
        return self.postgres.url or self.database_url

    def platform_url(self) -> str:
        return self.platform.url or self.database_url
