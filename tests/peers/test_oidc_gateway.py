"""The gateway's OIDC verification against a real OpenID Provider (node-oidc-provider configured like
the Keycloak realm: oidc/provider.mjs), without a browser: service-account tokens (client credentials,
what Prometheus uses in the compose profile), a key rotation right after a JWKS fetch, made-up key
ids, and Debian's Prometheus scraping an OIDC gateway with OAuth 2 client credentials."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth import Authenticator, AuthError, JwksCache
from tests.browser.conftest import Stack
from tests.peers.conftest import OpenIdProvider
from tests.peers.prom import Prometheus

pytestmark = pytest.mark.slow

AUDIENCE = "opsdash-gateway"  # deploy/keycloak/opsdash-realm.json's audience mapper


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
    provider = OpenIdProvider(tmp_path_factory.mktemp("op"), "http://127.0.0.1:9/", access_ttl=120).start()
    try:
        yield provider
    finally:
        provider.stop()


def client_token(op: OpenIdProvider, client: str, secret: str) -> str:
    req = urllib.request.Request(
        f"{op.issuer}/protocol/openid-connect/token", data=b"grant_type=client_credentials",
        headers={"Authorization": "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode(),
                 "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["access_token"]  # type: ignore[no-any-return]


def authenticator(op: OpenIdProvider, **cache: Any) -> Authenticator:
    # the gateway's default JWKS URL: issuer + Keycloak's path (the provider serves the same paths)
    return Authenticator("oidc", issuer=op.issuer, audience=AUDIENCE,
                         jwks=JwksCache(op.issuer + "/protocol/openid-connect/certs", **cache))


async def test_service_account_tokens_verify_and_the_role_is_checked(op: OpenIdProvider) -> None:
    auth = authenticator(op)
    token = client_token(op, "opsdash-prometheus", "test-opsdash-prometheus")
    header, claims = jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    # what this provider puts in a service-account token: aud a string (Keycloak: a list), no
    # preferred_username, sub = the client id, azp, typ at+jwt
    assert claims["aud"] == AUDIENCE and claims["sub"] == "opsdash-prometheus" and header["typ"] == "at+jwt"
    p = await auth.verify(token)
    assert p.role == "operator" and p.subject == "opsdash-prometheus"
    assert p.expires_at == pytest.approx(claims["exp"] + auth.leeway_s)
    with pytest.raises(AuthError) as err:
        await auth.verify(client_token(op, "opsdash-probes", "test-opsdash-probes"))
    assert err.value.status == 403 and "operator" in err.value.message


async def test_a_key_rotated_right_after_a_fetch_is_accepted_and_made_up_kids_cost_one_fetch(
        op: OpenIdProvider) -> None:
    auth = authenticator(op, min_refresh_s=3.0)
    assert auth.jwks is not None
    before = client_token(op, "opsdash-prometheus", "test-opsdash-prometheus")
    await auth.verify(before)
    fetched = time.monotonic()
    assert auth.jwks.fetches == 1
    new_kid = op.rotate()[0]
    after = client_token(op, "opsdash-prometheus", "test-opsdash-prometheus")
    assert jwt.get_unverified_header(after)["kid"] == new_kid != jwt.get_unverified_header(before)["kid"]
    # made-up key ids with the right issuer, signed by a key nobody published, at the same time
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    fakes = [jwt.encode({"iss": op.issuer, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60,
                         "realm_access": {"roles": ["operator"]}}, stranger, algorithm="RS256",
                        headers={"kid": f"made-up-{i}"}) for i in range(20)]
    results = await asyncio.gather(auth.verify(after), *(auth.verify(f) for f in fakes),
                                   return_exceptions=True)
    waited = time.monotonic() - fetched
    # before the fix: 401 "unknown signing key" for the provider's own new key until 30 s had passed
    assert not isinstance(results[0], BaseException), results[0]
    assert results[0].role == "operator"
    assert all(isinstance(r, AuthError) and r.status == 401 for r in results[1:])
    assert auth.jwks.fetches == 2  # one shared fetch at the end of the period
    assert 2.5 <= waited < 6
    # the old key is still published (as Keycloak keeps passive keys): its tokens stay valid
    assert (await auth.verify(before)).role == "operator"


def test_prometheus_scrapes_an_oidc_gateway_with_client_credentials(op: OpenIdProvider,
                                                                   tmp_path: Path) -> None:
    """The compose profile's way (deploy/prometheus/prometheus.yml: oauth2 client credentials), with
    real parts: Prometheus gets a token from the provider and scrapes an OIDC gateway."""
    stack = Stack(tmp_path)
    prom: Prometheus | None = None
    try:
        stack.env.update({"OPSDASH_AUTH": "oidc", "OPSDASH_OIDC_ISSUER": op.issuer,
                          "OPSDASH_OIDC_AUDIENCE": AUDIENCE})
        stack.start_gateway()
        (tmp_path / "secret").write_text("test-opsdash-prometheus")
        (tmp_path / "other").write_text("test-opsdash-probes")

        def job(name: str, client: str, secret_file: Path) -> dict[str, Any]:
            return {"job_name": name, "metrics_path": "/metrics",
                    "oauth2": {"client_id": client, "client_secret_file": str(secret_file),
                               "token_url": f"{op.issuer}/protocol/openid-connect/token"},
                    "static_configs": [{"targets": [f"127.0.0.1:{stack.port}"]}]}

        prom = Prometheus(tmp_path / "prometheus", yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [job("opsdash", "opsdash-prometheus", tmp_path / "secret"),
                               job("norole", "opsdash-probes", tmp_path / "other")]})).start()
        def both_scraped() -> dict[str, float] | None:
            up = {s["metric"]["job"]: float(s["value"][1]) for s in prom.query("up")}
            return up if up == {"opsdash": 1.0, "norole": 0.0} else None

        prom.wait("opsdash up, norole refused", both_scraped)
        targets = {t["labels"]["job"]: t for t in prom.api("targets")["activeTargets"]}
        assert "403" in targets["norole"]["lastError"], targets["norole"]["lastError"]
        assert prom.query('opsdash_gateway_clients{job="opsdash"}')
    finally:
        if prom is not None:
            prom.stop()
        stack.close()
