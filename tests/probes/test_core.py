"""The pure core: state rules, metric cleaning, configuration checks."""

from __future__ import annotations

import math

import msgspec
import pytest

from opsdash.config import ConfigError, load_config
from probes.config import PlatformProbeConfig, PostgresProbeConfig, ProbesConfig, ProbeSettings
from probes.core import ProbeError, ProbeState, Reading, TimedOut, Unavailable, judge, num
from telemetry_bus.contract import decode_probe, encode


def _judge(outcome, state, budget=100.0):  # type: ignore[no-untyped-def]
    return judge(outcome, state, now=1000.0, period_s=10.0, latency_budget_ms=budget)


def test_healthy_then_slow_then_near_limit() -> None:
    st = ProbeState()
    r = _judge(Reading(latency_ms=5.0, metrics={"a": 1}), st)
    assert (r.status, r.error, r.latency_ms, r.metrics) == ("healthy", None, 5.0, {"a": 1})
    r = _judge(Reading(latency_ms=150.0), st)
    assert r.status == "degraded" and r.error == "slow: 150 ms > budget 100 ms"
    r = _judge(Reading(latency_ms=5.0, warnings=("connections 90 of 97 (> 80%)",)), st)
    assert r.status == "degraded" and r.error == "connections 90 of 97 (> 80%)"
    # the result always round-trips through the wire contract
    assert decode_probe(encode(r)) == r


def test_down_after_two_failures_in_a_row_and_recovery_resets() -> None:
    st = ProbeState()
    r1 = _judge(ProbeError("connection refused: nothing listens on h:1"), st)
    assert r1.status == "degraded" and r1.error is not None and r1.error.startswith("connection refused")
    r2 = _judge(ProbeError("connection refused: nothing listens on h:1"), st)
    assert (r2.status, r2.error) == ("down", "connection refused: nothing listens on h:1")
    assert _judge(Reading(latency_ms=1.0), st).status == "healthy"
    # a single failure after a success is not "down" again
    assert _judge(ProbeError("x"), st).status == "degraded"


def test_timeout_is_down_at_once() -> None:
    st = ProbeState()
    r = _judge(TimedOut(2.0), st)
    assert r.status == "down" and r.error == "timeout: no answer within 2 s" and r.latency_ms == 2000.0


def test_unavailable_is_unknown_and_not_a_failure() -> None:
    st = ProbeState()
    _judge(ProbeError("x"), st)
    r = _judge(Unavailable("no docker socket"), st)
    assert (r.status, r.error, r.metrics) == ("unknown", "unavailable: no docker socket", {})
    assert st.failures == 0


def test_metrics_are_finite_or_null_and_names_checked() -> None:
    r = _judge(
        Reading(latency_ms=1.0, metrics={"a": math.inf, "b": math.nan, "c": "12", "d": True}), ProbeState()
    )
    assert r.metrics == {"a": None, "b": None, "c": 12, "d": None}
    with pytest.raises(ValueError, match="Bad"):
        _judge(Reading(latency_ms=1.0, metrics={"Bad": 1}), ProbeState())
    assert num("3.5") == 3.5 and num(None) is None and num(2**60) == float(2**60) and num("x") is None


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"period_s": 0.0}, "Expected `float` >= 0.05 - at `$.period_s`"),
        ({"timeout_s": 20.0}, "timeout_s must be within 0.01..period_s (10.0), got 20.0"),
        ({"latency_budget_ms": 9000.0}, "latency_budget_ms must be > 0 and <= timeout_s * 1000, got 9000.0"),
        ({"latency_budget_ms": 0.0}, "Expected `float` > 0.0 - at `$.latency_budget_ms`"),
        ({"retry_s": -1.0}, "Expected `float` > 0.0 - at `$.retry_s`"),
    ],
)
def test_settings_reject_bad_values_showing_them(kwargs: dict[str, float], needle: str) -> None:
    with pytest.raises(ValueError) as exc:
        msgspec.convert(kwargs, ProbeSettings)
    assert needle in str(exc.value)


def test_probe_configs_reject_bad_values() -> None:
    with pytest.raises(msgspec.ValidationError, match="'Mars/Base'"):
        msgspec.convert({"timezone": "Mars/Base"}, PlatformProbeConfig)
    with pytest.raises(msgspec.ValidationError, match="'mysql://x'"):
        msgspec.convert({"url": "mysql://x"}, PostgresProbeConfig)
    with pytest.raises(msgspec.ValidationError, match="unknown field `colour`"):
        msgspec.convert({"postgres": {"colour": 1}}, ProbesConfig)
    # ranges through msgspec.Meta: the error names the key and the bound
    for tree, needle in (
            ({"postgres": {"connections_warn_ratio": 1.5}}, r"<= 1.0 - at `\$.postgres.connections_warn_ratio`"),
            ({"postgres": {"largest_tables": 101}}, r"<= 100 - at `\$.postgres.largest_tables`"),
            ({"keycloak": {"realm": "a b"}}, r"at `\$.keycloak.realm`"),
            ({"docker": {"socket": "docker.sock"}}, r"at `\$.docker.socket`"),
            ({"docker": {"memory_warn_ratio": 0}}, r"> 0.0 - at `\$.docker.memory_warn_ratio`"),
            ({"influxdb": {"file_limit": 0}}, r">= 1 - at `\$.influxdb.file_limit`"),
            ({"disk": {"used_warn_pct": 150}}, r"<= 100.0 - at `\$.disk.used_warn_pct`"),
            ({"disk": {"walk_budget_s": 20}}, "walk_budget_s must be within 0..timeout_s")):
        with pytest.raises(msgspec.ValidationError, match=needle):
            msgspec.convert(tree, ProbesConfig)
    with pytest.raises(ConfigError, match=r"OPSDASH_PROBES__DISK__USED_WARN_PCT: probes\.disk\.used_warn_pct"):
        load_config(env={"OPSDASH_PROBES__DISK__USED_WARN_PCT": "150"})


def test_config_from_env_database_url_feeds_both_and_overrides_work() -> None:
    env = {
        "OPSDASH_DATABASE_URL": "postgresql://u@db:5432/iot",
        "OPSDASH_PROBES__PLATFORM__TIMEZONE": "Europe/Berlin",
        "OPSDASH_PROBES__POSTGRES__URL": "postgresql://monitor@db:5432/iot",
        "OPSDASH_PROBES__DISK__PERIOD_S": "60",
    }
    pc = load_config(env=env).probes
    assert pc.platform_url() == "postgresql://u@db:5432/iot"
    assert pc.postgres_url() == "postgresql://monitor@db:5432/iot"
    assert pc.platform.timezone == "Europe/Berlin" and pc.disk.period_s == 60.0
    with pytest.raises(ConfigError, match=r"probes\.platform.*Mars/Base"):
        load_config(env={"OPSDASH_PROBES__PLATFORM__TIMEZONE": "Mars/Base"})
