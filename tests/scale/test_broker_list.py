"""OPSDASH_MQTT_URL with several brokers (design.md section 12): parsed in order, bad entries named."""

from __future__ import annotations

import pytest

from opsdash.config import ConfigError, load_config
from telemetry_bus.config import MqttConfig


def test_one_url_is_one_endpoint() -> None:
    eps = MqttConfig(url="mqtts://u:p@broker:8884").endpoints()
    assert [(e.host, e.port, e.username, e.password, e.tls) for e in eps] == [("broker", 8884, "u", "p", True)]


def test_a_list_keeps_its_order_and_nodes_without_scheme_inherit_scheme_and_credentials() -> None:
    cfg = load_config(env={"OPSDASH_MQTT_URL": "mqtt://agg:s%40c@n1:1883, n2:1884 ,mqtt://other@n3"})
    eps = cfg.mqtt.endpoints()
    assert [(e.host, e.port, e.username, e.password) for e in eps] == [
        ("n1", 1883, "agg", "s@c"), ("n2", 1884, "agg", "s@c"), ("n3", 1883, "other", None)]
    assert cfg.mqtt.endpoint() == eps[0]


@pytest.mark.parametrize(("url", "why"), [
    ("mqtt://a:1883,,mqtt://b", "empty broker"),
    ("mqtt://a:1883,http://b", "must start with mqtt://"),
    ("mqtt://a:1883,b:notaport", "bad port"),
])
def test_a_bad_entry_names_the_key_and_the_reason(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env={"OPSDASH_MQTT_URL": url})
    text = str(err.value)
    assert "OPSDASH_MQTT_URL" in text and why in text, text
