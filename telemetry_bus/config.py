"""Configuration of the bus parts: the MQTT connection, the reporter and the aggregator.

Plain msgspec Structs; ``opsdash.config`` loads them from TOML plus ``OPSDASH_*`` overrides.
``__post_init__`` rejects values that decode but make no sense, with a message showing the value.
"""

from __future__ import annotations

import re
from typing import Annotated, Final
from urllib.parse import unquote, urlsplit

import msgspec

__all__ = ["SHARD_PATTERN", "AggregatorConfig", "MqttConfig", "MqttEndpoint", "ReporterConfig", "Thresholds",
           "parse_shard"]

SEED_SERVICES: Final = ("ingest", "evaluator", "dispatcher", "delivery")

Positive = Annotated[float, msgspec.Meta(gt=0)]


class MqttEndpoint(msgspec.Struct, frozen=True):
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


class MqttConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: ``mqtt://user:pass@host:1883`` or ``mqtts://...`` (TLS). Several brokers (the nodes of a
    #: cluster) comma-separated: every part connects to the first that answers and moves on to the
    #: next when it loses it. A node given without a scheme (``host:port``) takes the first URL's
    #: scheme and credentials: ``mqtt://u:p@n1:1883,n2:1883,n3:1883``.
    url: str = "mqtt://127.0.0.1:1883"
    #: Topic root; ``$ops`` by default. HiveMQ refuses ``$`` topics from clients: use e.g. ``ops`` there.
    topic_root: Annotated[str, msgspec.Meta(pattern=r"^\$?[A-Za-z0-9_.-]{1,32}$")] = "$ops"
    keepalive_s: Annotated[int, msgspec.Meta(ge=2, le=3600)] = 5
    #: The broker is NATS (its MQTT listener). NATS maps topic levels to subject tokens and
    #: disconnects a client that publishes a topic with ``.`` or a space in it, so reporters publish
    #: service and instance names with ``.`` mapped to ``_`` (``web-1.eu`` -> ``web-1_eu``) instead of
    #: looping on reconnects; the topic root must have no ``.``. See docs/scale.md.
    nats: bool = False

    def __post_init__(self) -> None:
        self.endpoints()  # raises ValueError with the reason
        if self.nats and "." in self.topic_root:
            raise ValueError(f"topic_root must have no '.' on NATS (nats = true), got {self.topic_root!r}")

    def topic_name(self, name: str) -> str:
        """A service or instance name as it goes into a topic on this broker (``.`` -> ``_`` on NATS)."""
        return name.replace(".", "_") if self.nats else name

    def endpoint(self) -> MqttEndpoint:
        """The first broker (the one to try first)."""
        return self.endpoints()[0]

    def endpoints(self) -> list[MqttEndpoint]:
        """Every broker of ``url``, in order."""
        items = [u.strip() for u in self.url.split(",")]
        if not items or any(not u for u in items):
            raise ValueError(f"url lists an empty broker, got {self.url!r}")
        first = urlsplit(items[0])
        out: list[MqttEndpoint] = []
        userinfo = first.netloc.rpartition("@")[0]
        inherit = f"{first.scheme}://{userinfo + '@' if userinfo else ''}"
        for item in items:
            url = item if "://" in item or not out else inherit + item
            out.append(_parse_endpoint(url, self.url))
        return out


def _parse_endpoint(url: str, whole: str) -> MqttEndpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"url must start with mqtt:// or mqtts://, got {whole!r}")
    if not parts.hostname:
        raise ValueError(f"url has no host, got {whole!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ValueError(f"url has a bad port, got {whole!r}") from exc
    return MqttEndpoint(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


class ReporterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=3600)] = 1.0
    backoff_initial_s: Positive = 0.2
    backoff_max_s: Positive = 10.0

    def __post_init__(self) -> None:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(f"backoff_max_s must be >= backoff_initial_s, got {self.backoff_max_s!r}")


class Thresholds(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Limits that turn a healthy instance degraded (design.md section 3)."""

    #: gauge name -> the value above which the instance is degraded.
    gauges: dict[str, float] = msgspec.field(
        default_factory=lambda: {"queue_depth": 1000.0, "pending_jobs": 50.0})
    #: failed counter -> (ok counter): ratio of failed/(ok+failed) over the window above which degraded.
    error_ratio: float = 0.2
    error_pairs: dict[str, str] = msgspec.field(
        default_factory=lambda: {"webhooks_failed": "webhooks_sent"})


SHARD_PATTERN: Final = re.compile(r"^(\d{1,2})/(\d{1,2})$")


def parse_shard(spec: str) -> tuple[int, int]:
    """``"k/n"`` → ``(k, n)``; ValueError naming what is wrong."""
    m = SHARD_PATTERN.match(spec)
    if m is None:
        raise ValueError(f"shard must be k/n (e.g. 0/2), got {spec!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if not 1 <= n <= 64:
        raise ValueError(f"shard count must be 1..64, got {spec!r}")
    if not 0 <= k < n:
        raise ValueError(f"shard index must be 0..{n - 1}, got {spec!r}")
    return k, n



class AggregatorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")] = "agg-1"
    #: ``k/n``: this process folds the services whose name hashes to k of n (probes on shard 0); the
    #: lowest live shard publishes the merged view (telemetry_bus/shards.py). ``0/1``: one aggregator.
    shard: str = "0/1"
    expected_services: list[str] = msgspec.field(default_factory=lambda: list(SEED_SERVICES))
    #: Probe targets whose state belongs in the health grid (the seed's four).
    expected_probes: list[str] = msgspec.field(
        default_factory=lambda: ["postgres", "influxdb", "mqtt", "keycloak"])
    tick_s: Annotated[float, msgspec.Meta(ge=0.05, le=60)] = 1.0
    snapshot_every_s: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 10.0
    #: Publish an early tick this long after news arrives (0 = only the regular ticks), so a new
    #: value reaches the screen ~0.1 s after its message instead of at the next whole tick. Early
    #: ticks are spaced at least 4 x the last tick's work apart, so a large fold sheds them first.
    early_tick_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.1
    window_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 60
    history_s: Annotated[int, msgspec.Meta(ge=60, le=86400)] = 900
    #: Evaluations a non-immediate state change must hold before it shows (hysteresis).
    hysteresis: Annotated[int, msgspec.Meta(ge=1, le=100)] = 2
    max_services: Annotated[int, msgspec.Meta(ge=1)] = 64
    max_instances_per_service: Annotated[int, msgspec.Meta(ge=1)] = 256
    max_series_per_instance: Annotated[int, msgspec.Meta(ge=1)] = 256
    #: Distinct series names over all instances of one service (each has a 1 s window in the fold).
    max_series_per_service: Annotated[int, msgspec.Meta(ge=1)] = 1024
    max_probes: Annotated[int, msgspec.Meta(ge=1)] = 64
    #: Instances offline for longer than this are forgotten.
    forget_after_s: Positive = 3600.0
    thresholds: Thresholds = Thresholds()
    #: Session expiry the broker keeps the aggregator's subscription (MQTT 5) for, while it is away.
    session_expiry_s: Annotated[int, msgspec.Meta(ge=0)] = 3600
    #: Which counters/gauges/histograms feed the seed's figures (service.metric).
    ingest_rate: str = "ingest.messages_received"
    write_rate: str = "ingest.messages_written"
    alert_rate: str = "evaluator.alerts_created"
    rules_rate: str = "evaluator.rules_evaluated"
    routed_rate: str = "dispatcher.alerts_routed"
    delivery_rate: str = "delivery.webhooks_sent"
    delivery_failed_rate: str = "delivery.webhooks_failed"
    write_latency: str = "ingest.influx_write_ms"

    def __post_init__(self) -> None:
        parse_shard(self.shard)  # ValueError: "shard must be k/n (e.g. 0/2), got '3'"
        if self.window_s > self.history_s:
            raise ValueError(f"window_s must not exceed history_s, got {self.window_s!r}")
        for name in ("ingest_rate", "write_rate", "alert_rate", "rules_rate", "routed_rate",
                     "delivery_rate", "delivery_failed_rate", "write_latency"):
            value = getattr(self, name)
            if value.count(".") != 1:
                raise ValueError(f"{name} must be service.metric, got {value!r}")
