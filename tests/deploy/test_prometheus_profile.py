"""docker-compose's ``prometheus`` profile without Docker: Prometheus' configuration through Debian's
promtool, the committed rules and dashboard equal to what ``opsdash export`` prints, Grafana's
provisioning pointing at both, and the Keycloak client Prometheus scrapes with."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsdash.config import load_config
from opsdash.export import grafana_dashboard, prometheus_rules, rules_yaml
from tests.deploy.test_compose import doc, raw  # noqa: F401 - fixtures
from tests.support.servers import ROOT

PROM = ROOT / "deploy/prometheus"
GRAFANA = ROOT / "deploy/grafana"


def _mounts(svc: dict[str, Any]) -> dict[str, str]:
    """container path -> host path of a service's bind mounts."""
    out = {}
    for vol in svc.get("volumes", []):
        src, dst = vol.split(":")[:2]
        if src.startswith("./"):
            out[dst] = src[2:]
    return out


def test_committed_rules_and_dashboard_are_what_export_prints() -> None:
    config = load_config(env={})
    assert (PROM / "opsdash-rules.yml").read_text() == rules_yaml(prometheus_rules(config, "opsdash")), \
        "re-export: opsdash export prometheus-rules -o deploy/prometheus/opsdash-rules.yml"
    assert json.loads((GRAFANA / "dashboards/opsdash.json").read_text()) == grafana_dashboard(config), \
        "re-export: opsdash export grafana-dashboard -o deploy/grafana/dashboards/opsdash.json"


def test_prometheus_config_passes_promtool_and_scrapes_every_gateway(doc: dict[str, Any],  # noqa: F811
                                                                     tmp_path: Path) -> None:
    svc = doc["services"]["prometheus"]
    mounts = _mounts(svc)
    conf_host = ROOT / mounts["/etc/prometheus/prometheus.yml"]
    conf = yaml.safe_load(conf_host.read_text())
    # every file the configuration names is mounted
    for rule_file in conf["rule_files"]:
        assert rule_file in mounts, rule_file
    job = conf["scrape_configs"][0]
    assert job["job_name"] == "opsdash"  # the exported dashboard's and rules' default job
    assert job["metrics_path"] == "/metrics"
    gateway_port = doc["services"]["gateway"]["environment"]["OPSDASH_LISTEN"].rsplit(":", 1)[1]
    assert job["dns_sd_configs"] == [{"names": ["gateway"], "type": "A", "port": int(gateway_port),
                                      "refresh_interval": "30s"}]
    oauth = job["oauth2"]
    assert oauth["client_secret_file"] == "/run/secrets/keycloak_prometheus_secret"
    assert svc["secrets"] == ["keycloak_prometheus_secret"]
    assert doc["secrets"]["keycloak_prometheus_secret"] == {"environment": "KEYCLOAK_PROMETHEUS_SECRET"}
    realm = json.loads((ROOT / "deploy/keycloak/opsdash-realm.json").read_text())
    assert oauth["token_url"] == f"http://keycloak:8080/realms/{realm['realm']}/protocol/openid-connect/token"
    # the configuration as Prometheus reads it: promtool, with the container paths moved here
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: ./run test installs Debian's prometheus package"
    (tmp_path / "secret").write_text("s3cret")
    text = conf_host.read_text()
    for dst, src in mounts.items():
        text = text.replace(dst, str(ROOT / src))
    text = text.replace("/run/secrets/keycloak_prometheus_secret", str(tmp_path / "secret"))
    (tmp_path / "prometheus.yml").write_text(text)
    out = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout and "7 rules found" in out.stdout


def test_keycloak_client_for_prometheus(doc: dict[str, Any]) -> None:  # noqa: F811
    realm = json.loads((ROOT / "deploy/keycloak/opsdash-realm.json").read_text())
    clients = {c["clientId"]: c for c in realm["clients"]}
    conf = yaml.safe_load((PROM / "prometheus.yml").read_text())
    client = clients[conf["scrape_configs"][0]["oauth2"]["client_id"]]
    assert client["serviceAccountsEnabled"] and not client["publicClient"]
    assert not client["standardFlowEnabled"] and not client["directAccessGrantsEnabled"]
    assert client["secret"] == "${KEYCLOAK_PROMETHEUS_SECRET}"
    assert doc["services"]["keycloak"]["environment"]["KEYCLOAK_PROMETHEUS_SECRET"]
    # its tokens carry what the gateway checks: the audience, the realm role operator, a subject
    assert {"opsdash-gateway-audience", "roles", "basic"} <= set(client["defaultClientScopes"])
    users = {u["username"]: u for u in realm["users"]}
    sa = users[f"service-account-{client['clientId']}"]
    assert sa["serviceAccountClientId"] == client["clientId"]
    assert doc["services"]["gateway"]["environment"]["OPSDASH_OIDC_AUDIENCE"] == "opsdash-gateway"
    assert "operator" in sa["realmRoles"]


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard(doc: dict[str, Any]) -> None:  # noqa: F811
    svc = doc["services"]["grafana"]
    mounts = _mounts(svc)
    prov = ROOT / mounts["/etc/grafana/provisioning"]
    ds = yaml.safe_load((prov / "datasources/prometheus.yml").read_text())["datasources"]
    assert [d["type"] for d in ds] == ["prometheus"] and ds[0]["isDefault"]
    assert ds[0]["url"] == "http://prometheus:9090"
    assert "9090:9090" in doc["services"]["prometheus"]["ports"][0]
    providers = yaml.safe_load((prov / "dashboards/opsdash.yml").read_text())["providers"]
    path = providers[0]["options"]["path"]
    assert path in mounts and (ROOT / mounts[path] / "opsdash.json").exists()
    home = svc["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/opsdash.json"
    dash = json.loads((ROOT / mounts[path] / "opsdash.json").read_text())
    # the dashboard's datasource variable offers Prometheus data sources; Grafana picks the default
    var = next(v for v in dash["templating"]["list"] if v["name"] == "datasource")
    assert var["query"] == "prometheus"
    assert doc["services"]["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_images_are_pinned(doc: dict[str, Any], name: str) -> None:  # noqa: F811
    image = doc["services"][name]["image"]
    assert ":" in image and not image.endswith(":latest")
