"""Loading the whole configuration: one TOML file plus ``OPSDASH_*`` environment overrides.

Precedence: defaults < TOML file (``--config FILE`` or ``OPSDASH_CONFIG``) < environment.

Environment variables (design.md section 7, part of the contract):

=========================  ==========================
variable                   key
=========================  ==========================
``OPSDASH_MQTT_URL``       ``mqtt.url``
``OPSDASH_TOPIC_ROOT``     ``mqtt.topic_root``
``OPSDASH_LISTEN``         ``gateway.listen``
``OPSDASH_AUTH``           ``gateway.auth``
``OPSDASH_TOKENS``         ``gateway.tokens`` (comma-separated)
``OPSDASH_OIDC_ISSUER``    ``gateway.oidc_issuer``
``OPSDASH_OIDC_AUDIENCE``  ``gateway.oidc_audience``
``OPSDASH_DATABASE_URL``   ``probes.database_url``
``OPSDASH_INTERVAL_S``     ``reporter.interval_s``
``OPSDASH_HISTORY_URL``    ``history.url``
=========================  ==========================

Every other key can be set as ``OPSDASH_<SECTION>__<KEY>`` (double underscores between levels, e.g.
``OPSDASH_AGGREGATOR__HYSTERESIS=3``); the value is read as a TOML value when it parses as one
(numbers, booleans, ``["a", "b"]``), otherwise as a string.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from alerts.config import AlertsConfig
from gateway.config import GatewayConfig
from history.config import HistoryConfig, RecorderConfig
from probes.config import ProbesConfig
from telemetry_bus.config import AggregatorConfig, MqttConfig, ReporterConfig
from telemetry_bus.graph import GraphConfig, GraphConfigError

__all__ = ["ENV_ALIASES", "Config", "ConfigError", "load_config"]


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mqtt: MqttConfig = MqttConfig()
    reporter: ReporterConfig = ReporterConfig()
    aggregator: AggregatorConfig = AggregatorConfig()
    gateway: GatewayConfig = GatewayConfig()
    probes: ProbesConfig = ProbesConfig()
    graph: GraphConfig = GraphConfig()
    history: HistoryConfig = HistoryConfig()
    recorder: RecorderConfig = RecorderConfig()
    alerts: AlertsConfig = AlertsConfig()


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the key (and its source) and the reason."""


ENV_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "OPSDASH_MQTT_URL": ("mqtt", "url"),
    "OPSDASH_TOPIC_ROOT": ("mqtt", "topic_root"),
    "OPSDASH_LISTEN": ("gateway", "listen"),
    "OPSDASH_AUTH": ("gateway", "auth"),
    "OPSDASH_TOKENS": ("gateway", "tokens"),
    "OPSDASH_OIDC_ISSUER": ("gateway", "oidc_issuer"),
    "OPSDASH_OIDC_AUDIENCE": ("gateway", "oidc_audience"),
    "OPSDASH_DATABASE_URL": ("probes", "database_url"),
    "OPSDASH_INTERVAL_S": ("reporter", "interval_s"),
    "OPSDASH_HISTORY_URL": ("history", "url"),
}
_LIST_ALIASES: Final = {"OPSDASH_TOKENS"}
#: Variables read elsewhere (not config keys); listed so that they are not mistaken for typos.
ENV_OTHER: Final = {"OPSDASH_CONFIG", "OPSDASH_TIMEOUT_FACTOR", "OPSDASH_VENV"}


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any, source: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(path)}: {part} is not a table")
        node = child
    node[path[-1]] = value


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load, merge and validate the configuration; raise ConfigError naming the key on any problem."""
    env = os.environ if env is None else env
    path = path or env.get("OPSDASH_CONFIG") or None
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                tree = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: not valid TOML: {exc}") from exc
    for name, raw in sorted(env.items()):
        if not name.startswith("OPSDASH_") or name in ENV_OTHER:
            continue
        if name in ENV_ALIASES:
            keypath = ENV_ALIASES[name]
            value: Any = ([t.strip() for t in raw.split(",") if t.strip()] if name in _LIST_ALIASES
                          else _env_value(raw) if keypath[-1] != "url" else raw)
            if isinstance(value, (int, float)) and keypath[-1] not in ("interval_s",):
                value = raw  # e.g. OPSDASH_TOPIC_ROOT=123 stays a string
        elif "__" in name:
            keypath = tuple(p.lower() for p in name[len("OPSDASH_"):].split("__"))
            value = _env_value(raw)
        else:
            continue  # other OPSDASH_ variables belong to tools around us, not to the config
        _set(tree, keypath, value, f"environment variable {name}")
        sources[".".join(keypath)] = f"environment variable {name}"
    try:
        config = msgspec.convert(tree, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), sources, path)) from exc
    try:  # graph.edges must name components of this deployment (services and probe targets)
        config.graph.resolved(graph_components(config))
    except GraphConfigError as exc:
        origin = sources.get("graph.edges") or (f"config file {path}" if path else "configuration")
        raise ConfigError(f"{origin}: {exc}") from exc
    return config


def graph_components(config: Config) -> list[str]:
    """The components that ``graph.edges`` may name: expected services and probe targets."""
    return [*config.aggregator.expected_services, *config.aggregator.expected_probes]


def _explain(message: str, sources: dict[str, str], path: str | None) -> str:
    """Turn msgspec's ``... - at `$.aggregator.window_s``` into ``aggregator.window_s: ...``."""
    reason, _, where = message.rpartition(" - at `")
    if not reason:
        reason, where = message, ""
    key = where.rstrip("`").removeprefix("$").lstrip(".")
    if reason.startswith("Object contains unknown field"):
        field = reason.split("`")[1] if "`" in reason else "?"
        key = f"{key}.{field}" if key else field
        reason = "unknown key"
    first = reason.split(" ", 1)[0]
    if f"{key}.{first}" in sources:  # a __post_init__ check names its field first
        key = f"{key}.{first}"
        reason = reason.split(" ", 1)[1]
    origin = sources.get(key) or (f"config file {path}" if path else "configuration")
    return f"{origin}: {key or '(top level)'}: {reason}"


def env_overrides_known(env: Mapping[str, str]) -> list[str]:
    """The ``OPSDASH_*`` variables in ``env`` that this code reads (for the compose-file test)."""
    return [n for n in env if n in ENV_ALIASES or n in ENV_OTHER or "__" in n]
