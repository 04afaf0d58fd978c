"""Configuration: TOML + OPSDASH_* environment; a bad value names the key, its source and the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from opsdash.config import ConfigError, load_config


def test_defaults_match_the_contract() -> None:
    c = load_config(env={})
    assert c.mqtt.url == "mqtt://127.0.0.1:1883"
    assert c.mqtt.topic_root == "$ops"
    assert c.gateway.listen == "127.0.0.1:8787"
    assert c.gateway.auth == "none"
    assert c.reporter.interval_s == 1.0
    assert c.aggregator.expected_services == ["ingest", "evaluator", "dispatcher", "delivery"]


def test_named_variables_of_design_md_section_7() -> None:
    env = {
        "OPSDASH_MQTT_URL": "mqtt://agg:s%40cret@broker:1884",
        "OPSDASH_TOPIC_ROOT": "ops",
        "OPSDASH_LISTEN": "0.0.0.0:9000",
        "OPSDASH_AUTH": "token",
        "OPSDASH_TOKENS": "a, b ,c",
        "OPSDASH_OIDC_ISSUER": "https://kc/realms/iot",
        "OPSDASH_OIDC_AUDIENCE": "opsdash",
        "OPSDASH_DATABASE_URL": "postgresql://u@db/iot",
        "OPSDASH_INTERVAL_S": "0.5",
    }
    c = load_config(env=env)
    ep = c.mqtt.endpoint()
    assert (ep.host, ep.port, ep.username, ep.password, ep.tls) == ("broker", 1884, "agg", "s@cret", False)
    assert c.mqtt.topic_root == "ops"
    assert (c.gateway.listen, c.gateway.auth, c.gateway.tokens) == ("0.0.0.0:9000", "token", ["a", "b", "c"])
    assert (c.gateway.oidc_issuer, c.gateway.oidc_audience) == ("https://kc/realms/iot", "opsdash")
    assert c.probes.database_url == "postgresql://u@db/iot"
    assert c.reporter.interval_s == 0.5


def test_toml_file_then_environment_wins(tmp_path: Path) -> None:
    f = tmp_path / "opsdash.toml"
    f.write_text('[aggregator]\nhysteresis = 4\nexpected_services = ["ingest"]\n[mqtt]\nurl = "mqtt://x:1"\n')
    c = load_config(str(f), env={"OPSDASH_AGGREGATOR__HYSTERESIS": "5"})
    assert c.aggregator.hysteresis == 5
    assert c.aggregator.expected_services == ["ingest"]
    assert c.mqtt.url == "mqtt://x:1"
    assert load_config(env={"OPSDASH_CONFIG": str(f)}).aggregator.hysteresis == 4


@pytest.mark.parametrize(("env", "message"), [
    ({"OPSDASH_AGGREGATOR__HYSTERESIS": "often"},
     "environment variable OPSDASH_AGGREGATOR__HYSTERESIS: aggregator.hysteresis: Expected `int`, got `str`"),
    ({"OPSDASH_AGGREGATOR__HYSTERESIS": "0"},
     "environment variable OPSDASH_AGGREGATOR__HYSTERESIS: aggregator.hysteresis: Expected `int` >= 1"),
    ({"OPSDASH_AGGREGATOR__NO_SUCH_KEY": "1"},
     "environment variable OPSDASH_AGGREGATOR__NO_SUCH_KEY: aggregator.no_such_key: unknown key"),
    ({"OPSDASH_MQTT_URL": "http://broker"},
     "environment variable OPSDASH_MQTT_URL: mqtt.url: must start with mqtt:// or mqtts://, got 'http://broker'"),
    ({"OPSDASH_AUTH": "maybe"}, "environment variable OPSDASH_AUTH: gateway.auth: Invalid enum value 'maybe'"),
    ({"OPSDASH_AGGREGATOR__WINDOW_S": "2000"}, "environment variable OPSDASH_AGGREGATOR__WINDOW_S: aggregator.window_s: must not exceed history_s, got 2000"),
    ({"OPSDASH_INTERVAL_S": "-1"}, "environment variable OPSDASH_INTERVAL_S: reporter.interval_s"),
])
def test_bad_values_name_the_key_its_source_and_the_reason(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env=env)
    assert message in str(err.value), str(err.value)


def test_bad_toml_file_is_named(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[aggregator\nx=1")
    with pytest.raises(ConfigError, match=r"config file .*bad.toml: not valid TOML"):
        load_config(str(f), env={})
    f.write_text("[gateway]\nlisten = 5\n")
    with pytest.raises(ConfigError, match=r"config file .*bad.toml: gateway.listen: Expected `str`, got `int`"):
        load_config(str(f), env={})
    with pytest.raises(ConfigError, match=r"config file /nonexistent\.toml: No such file"):
        load_config("/nonexistent.toml", env={})


def test_the_command_exits_2_with_the_message_not_a_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "opsdash.cli", "aggregator"], check=False, capture_output=True,
                          text=True,
                          env={"OPSDASH_AGGREGATOR__HYSTERESIS": "often", "PATH": "/usr/bin:/bin"}, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("opsdash: bad configuration: environment variable "
                                   "OPSDASH_AGGREGATOR__HYSTERESIS: aggregator.hysteresis: Expected `int`, got `str`")
