"""docker-compose.yml without Docker: the Compose schema, the variables it sets, the files it mounts.

- The file validates against the Compose Specification's JSON schema (vendored: compose-spec.json,
  source in compose-spec.SOURCE.md), as written and after interpolation with .env.example.
- Every ``OPSDASH_*`` variable it gives a container is one opsdash reads: loading the configuration
  with exactly those variables succeeds and each value lands on its key.
- Healthchecks, mounts, secrets, the MQTT users and the Keycloak realm agree with each other.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from opsdash.config import ENV_ALIASES, Config, load_config
from tests.support.servers import ROOT

HERE = Path(__file__).parent
COMPOSE = ROOT / "docker-compose.yml"
OPSDASH_PARTS = {"aggregator": "aggregator", "probes": "probes", "gateway": "gateway", "notifier": "notifier",
                 "recorder": "recorder"}
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation (${VAR}, ${VAR:-default}, ${VAR:?error}, $$)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3)
        val = env.get(name)
        if op in (":-", "-"):
            return val if (val if op == ":-" else val is not None) else arg
        if op in (":?", "?") and not val:
            raise AssertionError(f"required variable {name} is not set: {arg}")
        return val or ""

    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def doc(raw: dict[str, Any]) -> dict[str, Any]:
    env = {k: (v if v != "change-me" else f"secret-{k.lower()}") for k, v in env_example().items()}
    return interpolate(raw, env)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads((HERE / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_compose_file_matches_the_compose_specification(raw: dict[str, Any], doc: dict[str, Any],
                                                         validator: jsonschema.Draft7Validator) -> None:
    for d in (raw, doc):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(d)]
        assert errors == []
    # the validator is not vacuous: typical mistakes are refused
    for mutate in (lambda d: d["services"]["gateway"].__setitem__("helthcheck", {}),
                   lambda d: d["services"]["gateway"]["healthcheck"].__setitem__("intervall", "5s"),
                   lambda d: d["services"]["probes"]["depends_on"]["postgres"].__setitem__("condition", "up"),
                   lambda d: d.__setitem__("service", {})):
        bad = copy.deepcopy(raw)
        mutate(bad)
        assert list(validator.iter_errors(bad)), "a broken compose file passed the schema"


def test_services_healthchecks_and_profiles(doc: dict[str, Any]) -> None:
    services = doc["services"]
    assert {"mosquitto", "postgres", "influxdb", "keycloak", "aggregator", "probes", "gateway",
            "simulator"} <= set(services)
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert "start_period" in svc["healthcheck"] and "interval" in svc["healthcheck"]
    for name, part in OPSDASH_PARTS.items():
        assert services[name]["healthcheck"]["test"] == ["CMD", "opsdash", "healthcheck", part]
        assert services[name]["command"] == ["opsdash", part]
    assert services["simulator"]["profiles"] == ["demo"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["prometheus"]
    optional = {"simulator", "prometheus", "grafana"}
    assert all("profiles" not in s for n, s in services.items() if n not in optional)
    # data lives in named volumes
    assert set(doc["volumes"]) == {"mosquitto-data", "postgres-data", "influxdb-data", "prometheus-data",
                                   "grafana-data"}


def test_every_opsdash_variable_is_read_by_opsdash(doc: dict[str, Any]) -> None:
    checked = 0
    for name, svc in doc["services"].items():
        env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
        ours = {k: v for k, v in env.items() if k.startswith("OPSDASH_")}
        if not ours:
            continue
        config = load_config(None, env=ours)  # raises ConfigError naming any unknown key
        for var, value in ours.items():
            path = ENV_ALIASES.get(var) or tuple(p.lower() for p in var[len("OPSDASH_"):].split("__"))
            assert var in ENV_ALIASES or "__" in var, f"{name}: {var} is neither an alias nor SECTION__KEY"
            got: Any = config
            for part in path:
                got = getattr(got, part)
            default: Any = Config()
            for part in path:
                default = getattr(default, part)
            expected = _expected(var, value)
            assert got == expected, f"{name}: {var}={value!r} gave {path} = {got!r}"
            checked += 1
    assert checked >= 20


def _expected(var: str, value: str) -> Any:
    if var == "OPSDASH_TOKENS":
        return [t.strip() for t in value.split(",") if t.strip()]
    if value.startswith("["):
        return json.loads(value)
    if var == "OPSDASH_INTERVAL_S":
        return float(value)
    if var not in ENV_ALIASES and re.fullmatch(r"-?[0-9]+", value):  # SECTION__KEY values read as TOML
        return int(value)
    return value


def test_no_secret_is_committed(raw: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for line in text.splitlines():
        m = re.search(r"(PASSWORD|SECRET|TOKEN)[A-Z_]*:\s*(\S+)", line)
        if m and not line.lstrip().startswith("#"):
            assert "${" in m.group(2), f"literal secret in docker-compose.yml: {line.strip()}"
    example = env_example()
    for k, v in example.items():
        if re.search(r"PASSWORD|SECRET", k):
            assert v in ("change-me", ""), f".env.example holds a real-looking secret for {k}"
    assert ".env" not in [p.name for p in ROOT.iterdir()] or ".env" in (ROOT / ".gitignore").read_text()
    # every variable compose requires (${VAR:?...}) or uses is documented in .env.example
    used = {m.group(1) for m in _VAR.finditer(text) if m.group(1)}
    assert used - set(example) == set()


def test_mounted_files_exist_and_mosquitto_settings_match(doc: dict[str, Any]) -> None:
    for name, svc in doc["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{name} mounts missing {src}"
    # the compose broker keeps the tuning of deploy/mosquitto.conf (the settings opsdash needs)
    tuned = ("persistence ", "autosave_interval", "max_queued_messages", "max_queued_bytes",
             "max_inflight_messages", "message_size_limit", "persistent_client_expiration", "sys_interval")
    base = [ln for ln in (ROOT / "deploy/mosquitto.conf").read_text().splitlines() if ln.startswith(tuned)]
    compose_conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
    assert base and all(ln in compose_conf for ln in base), base
    assert "allow_anonymous false" in compose_conf


def test_mqtt_users_agree_with_acl_and_password_script(doc: dict[str, Any]) -> None:
    acl = (ROOT / "deploy/mosquitto/acl").read_text()
    script = (ROOT / "deploy/mosquitto/make-passwd.sh").read_text()
    for name in OPSDASH_PARTS:
        url = doc["services"][name]["environment"]["OPSDASH_MQTT_URL"]
        user = re.match(r"mqtt://([^:]+):", url).group(1)  # type: ignore[union-attr]
        assert user == f"opsdash-{name}"
        assert f"user {user}\n" in acl and f"add {user} " in script
        assert doc["services"]["mosquitto"]["environment"][f"MQTT_PASSWORD_{name.upper()}"]


def test_keycloak_realm_has_operator_role_gateway_audience_and_demo_user(doc: dict[str, Any]) -> None:
    realm = json.loads((ROOT / "deploy/keycloak/opsdash-realm.json").read_text())
    gw_env = doc["services"]["gateway"]["environment"]
    assert gw_env["OPSDASH_OIDC_ISSUER"].endswith(f"/realms/{realm['realm']}")
    audience = gw_env["OPSDASH_OIDC_AUDIENCE"]
    assert "operator" in [r["name"] for r in realm["roles"]["realm"]]
    clients = {c["clientId"]: c for c in realm["clients"]}
    assert audience in clients
    scopes = {s["name"]: s for s in realm["clientScopes"]}
    mapped = [s for s in scopes.values() for m in s["protocolMappers"]
              if m["protocolMapper"] == "oidc-audience-mapper"
              and m["config"]["included.client.audience"] == audience
              and m["config"]["access.token.claim"] == "true"]
    assert mapped
    login = clients["opsdash"]
    assert login["publicClient"] and login["attributes"]["pkce.code.challenge.method"] == "S256"
    assert mapped[0]["name"] in login["defaultClientScopes"]
    users = {u["username"]: u for u in realm["users"]}
    assert "operator" in users["operator"]["realmRoles"]
    assert users["operator"]["credentials"][0]["value"].startswith("${")  # no committed password
    probes_env = doc["services"]["probes"]["environment"]
    assert probes_env["OPSDASH_PROBES__KEYCLOAK__CLIENT_ID"] in clients
    assert probes_env["OPSDASH_PROBES__KEYCLOAK__REALM"] == realm["realm"]
