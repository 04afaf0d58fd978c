"""Auth matrix: static and display tokens, and Keycloak-style OIDC tokens against a fake JWKS server.

Tokens are minted here from an RSA key generated per test run; the JWKS endpoint is a tiny real HTTP
server that counts its hits and can be switched off (Keycloak down).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.auth import Authenticator, AuthError, JwksCache, Principal
from tests.conftest import eventually
from tests.gateway.client import close_code, recv
from tests.gateway.conftest import GatewayFactory, published
from tests.gateway.sim import Publisher, ViewSim

ISSUER = "http://kc.test/realms/iot"
AUDIENCE = "opsdash-gateway"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {**data, "kid": kid, "alg": "RS256", "use": "sig"}


def mint(*, kid: str = "k1", key: rsa.RSAPrivateKey = KEY, exp: float | None = None,
         nbf: float | None = None, iss: str = ISSUER, aud: Any = (AUDIENCE, "account"),
         roles: list[str] | None = None, alg: str = "RS256") -> str:
    now = time.time()
    claims: dict[str, Any] = {"iss": iss, "aud": list(aud) if isinstance(aud, tuple) else aud,
                              "sub": "u-1", "iat": int(now),
                              "exp": int(exp if exp is not None else now + 300),
                              "preferred_username": "alice", "typ": "Bearer",
                              "realm_access": {"roles": roles if roles is not None else ["operator"]}}
    if nbf is not None:
        claims["nbf"] = int(nbf)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def unsigned(claims_token: str) -> str:
    """The same claims with ``alg: none`` and no signature."""
    _, payload, _ = claims_token.split(".")
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "k1"}).encode()).rstrip(b"=")
    return f"{header.decode()}.{payload}."


def hs256_with_public_key() -> str:
    """The classic key-confusion attack: HMAC-signed with the RSA public key as the secret."""
    import hashlib
    import hmac

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    now = int(time.time())
    body = b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 300,
                           "realm_access": {"roles": ["operator"]}}).encode())
    sig = hmac.new(PUBLIC_PEM, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(sig)}"


class FakeJwks:
    """A real HTTP server answering the realm's certs endpoint; ``down`` makes it answer 503."""

    def __init__(self) -> None:
        self.keys = [jwk(KEY, "k1")]
        self.hits = 0
        self.down = False
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.hits += 1
        if self.down:
            status, body = "503 Service Unavailable", b'{"error":"down"}'
        else:
            status, body = "200 OK", json.dumps({"keys": self.keys}).encode()
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: "
                     f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/realms/iot/protocol/openid-connect/certs"


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[FakeJwks, str]]:
    fake = FakeJwks()
    url = await fake.start()
    yield fake, url
    assert fake.server is not None
    fake.server.close()


def oidc_auth(url: str, min_refresh_s: float = 30.0) -> Authenticator:
    return Authenticator("oidc", issuer=ISSUER, audience=AUDIENCE, leeway_s=5,
                         jwks=JwksCache(url, min_refresh_s=min_refresh_s))


CASES = [
    ("valid", mint, None),
    ("expired", lambda: mint(exp=time.time() - 120), (401, "token_expired")),
    ("not yet valid", lambda: mint(nbf=time.time() + 120), (401, "unauthorized")),
    ("wrong issuer", lambda: mint(iss="http://evil/realms/iot"), (401, "unauthorized")),
    ("wrong audience", lambda: mint(aud="someone-else"), (401, "unauthorized")),
    ("alg none", lambda: unsigned(mint()), (401, "unauthorized")),
    ("HS256 with the public key", hs256_with_public_key, (401, "unauthorized")),
    ("signed by another key", lambda: mint(key=OTHER_KEY), (401, "unauthorized")),
    ("missing role", lambda: mint(roles=["default-roles-iot"]), (403, "forbidden")),
    ("garbage", lambda: "not.a.token", (401, "unauthorized")),
]


@pytest.mark.parametrize(("name", "make", "refusal"), CASES, ids=[c[0] for c in CASES])
async def test_oidc_matrix(jwks: tuple[FakeJwks, str], name: str, make: Any,
                           refusal: tuple[int, str] | None) -> None:
    _, url = jwks
    auth = oidc_auth(url)
    token = make()
    if refusal is None:
        p = await auth.verify(token)
        assert p.role == "operator" and p.subject == "alice" and p.expires_at is not None
        return
    with pytest.raises(AuthError) as err:
        await auth.verify(token)
    assert (err.value.status, err.value.code) == refusal, err.value.message


async def test_unknown_kid_flood_fetches_jwks_at_most_once_per_period(jwks: tuple[FakeJwks, str]) -> None:
    fake, url = jwks
    now = [1000.0]
    auth = Authenticator("oidc", issuer=ISSUER, audience=AUDIENCE,
                         jwks=JwksCache(url, min_refresh_s=60, clock=lambda: now[0]))
    await auth.verify(mint())
    assert fake.hits == 1
    for i in range(50):  # within the period of the first fetch: no fetch at all
        with pytest.raises(AuthError, match="unknown signing key"):
            await auth.verify(mint(kid=f"made-up-{i}"))
    assert fake.hits == 1
    now[0] += 61
    results = await asyncio.gather(*(auth.verify(mint(kid=f"c-{i}")) for i in range(50)),
                                   return_exceptions=True)
    assert all(isinstance(r, AuthError) for r in results)
    assert fake.hits == 2  # 50 concurrent unknown kids after the period: one fetch
    assert (await auth.verify(mint())).role == "operator"  # known kid: no fetch
    assert fake.hits == 2


async def test_key_rotation_is_picked_up_through_an_unknown_kid(jwks: tuple[FakeJwks, str]) -> None:
    fake, url = jwks
    now = [0.0]
    auth = Authenticator("oidc", issuer=ISSUER, audience=AUDIENCE,
                         jwks=JwksCache(url, min_refresh_s=30, clock=lambda: now[0]))
    await auth.verify(mint())
    fake.keys.append(jwk(OTHER_KEY, "k2"))
    now[0] += 31  # past min_refresh_s on the cache's own clock: no sleeping on the wall clock
    assert (await auth.verify(mint(kid="k2", key=OTHER_KEY))).role == "operator"


async def test_an_unknown_kid_inside_the_refresh_period_waits_for_one_shared_fetch(
        jwks: tuple[FakeJwks, str]) -> None:
    """A rotation right after a fetch: the new key's token waits for the period's end (one fetch for
    it and every made-up kid alongside) instead of being refused (tests/peers/test_oidc_gateway.py
    shows it with a real provider)."""
    fake, url = jwks
    now = [1000.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    auth = Authenticator("oidc", issuer=ISSUER, audience=AUDIENCE,
                         jwks=JwksCache(url, min_refresh_s=20, clock=lambda: now[0], sleep=sleep))
    await auth.verify(mint())
    assert fake.hits == 1
    now[0] += 5
    fake.keys.append(jwk(OTHER_KEY, "k2"))
    results = await asyncio.gather(auth.verify(mint(kid="k2", key=OTHER_KEY)),
                                   *(auth.verify(mint(kid=f"made-up-{i}")) for i in range(20)),
                                   return_exceptions=True)
    assert isinstance(results[0], Principal) and results[0].role == "operator"
    assert all(isinstance(r, AuthError) and "unknown signing key" in r.message for r in results[1:])
    assert fake.hits == 2 and slept == [15.0]
    # past max_wait_s a waiter is refused at once rather than held
    cache = JwksCache(url, min_refresh_s=60, max_wait_s=5, clock=lambda: now[0], sleep=sleep)
    auth = Authenticator("oidc", issuer=ISSUER, audience=AUDIENCE, jwks=cache)
    await auth.verify(mint())
    with pytest.raises(AuthError, match="unknown signing key"):
        await auth.verify(mint(kid="k3"))
    assert slept == [15.0]


async def test_a_foreign_issuer_costs_no_jwks_fetch(jwks: tuple[FakeJwks, str]) -> None:
    fake, url = jwks
    auth = oidc_auth(url, min_refresh_s=0.0)
    await auth.verify(mint())
    for i in range(10):
        with pytest.raises(AuthError, match="issuer"):
            await auth.verify(mint(kid=f"other-{i}", iss="https://evil.example/realms/opsdash"))
    assert fake.hits == 1


async def test_jwks_down_after_a_first_fetch_keeps_the_last_good_keys(jwks: tuple[FakeJwks, str]) -> None:
    fake, url = jwks
    cache = JwksCache(url, min_refresh_s=0.0, max_age_s=0.0)  # every use tries to refresh
    auth = Authenticator("oidc", issuer=ISSUER, audience=AUDIENCE, jwks=cache)
    await auth.verify(mint())
    fake.down = True
    for _ in range(3):
        assert (await auth.verify(mint())).subject == "alice"
    assert cache.failures >= 1 and fake.hits >= 2
    assert fake.server is not None
    fake.server.close()
    await fake.server.wait_closed()  # now not even listening
    assert (await auth.verify(mint())).subject == "alice"


async def test_static_tokens_and_display_tokens() -> None:
    auth = Authenticator("token", tokens=["s3cret"], display_tokens=["wall"],
                         display_sections=["health"])
    assert (await auth.verify("s3cret")).role == "operator"
    d = await auth.verify("wall")
    assert d.role == "display" and d.sections == frozenset({"health", "meta"})
    for bad in ("", None, "s3cre", "s3cret ", "x" * 9000):
        with pytest.raises(AuthError) as err:
            await auth.verify(bad)
        assert err.value.status == 401


def test_misconfigurations_refuse_to_start() -> None:
    with pytest.raises(ValueError, match="token"):
        Authenticator("token")
    with pytest.raises(ValueError, match="asymmetric"):
        Authenticator("oidc", issuer=ISSUER, audience=AUDIENCE, algorithms=["HS256"],
                      jwks=JwksCache("http://x"))
    with pytest.raises(ValueError, match="leeway"):
        Authenticator("oidc", issuer=ISSUER, audience=AUDIENCE, leeway_s=300, jwks=JwksCache("http://x"))


# -- through the gateway: HTTP statuses and close codes ---------------------------------------------

async def test_token_mode_over_rest_and_websocket(make_gateway: GatewayFactory, publisher: Publisher) -> None:
    gw = await make_gateway(auth="token", tokens=["s3cret"], display_tokens=["wall"], auth_timeout_s=0.5)
    sim = ViewSim()
    await published(gw, publisher, sim)
    live = f"ws://127.0.0.1:{gw.port}/operator/system/live"
    async with httpx.AsyncClient(base_url=gw.url) as http:
        r = await http.get("/operator/system/health")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await http.get("/operator/system/health", headers={"Authorization": "Bearer nope"})
                ).status_code == 401
        ok = await http.get("/operator/system/health", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        wall = {"Authorization": "Bearer wall"}
        assert (await http.get("/operator/system/health", headers=wall)).status_code == 200
        assert (await http.get("/metrics", headers=wall)).status_code == 403
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/healthz")).status_code == 200  # open, for load balancers
    # header auth: snapshot at once
    async with connect(live, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
        assert (await recv(ws, "snapshot"))["state"] == sim.client_state()
    # wrong header: refused at the handshake, no frame
    with pytest.raises(InvalidStatus) as err:
        await connect(live, additional_headers={"Authorization": "Bearer nope"})
    assert err.value.response.status_code == 401
    # browser style: nothing is sent before a valid hello
    async with connect(live) as ws:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await ws.recv()
        await ws.send(json.dumps({"type": "hello", "token": "s3cret", "sections": ["health"]}))
        assert (await recv(ws))["type"] == "meta"
        snap = await recv(ws, "snapshot")
        assert set(snap["state"]) == {"health", "meta"}
    async with connect(live) as ws:
        await ws.send(json.dumps({"type": "hello", "token": "nope"}))
        err_frame = await recv(ws)
        assert err_frame == {"type": "error", "code": "unauthorized", "message": "unknown token"}
        assert await close_code(ws) == 4401
    async with connect(live) as ws:
        await ws.send(json.dumps({"type": "resync"}))
        assert (await recv(ws))["type"] == "error"
        assert await close_code(ws) == 4401
    async with connect(live) as ws:  # says nothing
        assert (await recv(ws, "error"))["code"] == "auth_timeout"
        assert await close_code(ws) == 4408
    # display token: its sections only
    async with connect(live) as ws:
        await ws.send(json.dumps({"type": "hello", "token": "wall"}))
        snap = await recv(ws, "snapshot")
        assert "services" not in snap["state"] and "health" in snap["state"]
    async with connect(live) as ws:
        await ws.send(json.dumps({"type": "hello", "token": "wall", "sections": ["services"]}))
        assert (await recv(ws, "error"))["code"] == "forbidden"
        assert await close_code(ws) == 4403


async def test_oidc_mode_closes_the_socket_when_the_token_expires(
        make_gateway: GatewayFactory, publisher: Publisher, jwks: tuple[FakeJwks, str]) -> None:
    fake, url = jwks
    # The gateway's wall clock is ours to move; PyJWT checks exp against the real time at verify.
    wall = [time.time()]
    gw = await make_gateway(auth="oidc", oidc_issuer=ISSUER, oidc_audience=AUDIENCE,
                            oidc_jwks_url=url, oidc_leeway_s=0, wall_clock=lambda: wall[0])
    await eventually(lambda: fake.hits >= 1, what="JWKS fetched at start")
    sim = ViewSim()
    await published(gw, publisher, sim)
    live = f"ws://127.0.0.1:{gw.port}/operator/system/live"
    with pytest.raises(InvalidStatus) as err:
        await connect(live, additional_headers={"Authorization": f"Bearer {mint(roles=[])}"})
    assert err.value.response.status_code == 403
    exp = int(time.time()) + 60
    async with connect(live) as ws:
        await ws.send(json.dumps({"type": "hello", "token": mint(exp=exp)}))
        await recv(ws, "snapshot")
        gw._housekeeping_once()
        assert any(c.live for c in gw.clients.values())  # not expired yet
        wall[0] = exp + 0.5
        gw._housekeeping_once()
        err_frame = await recv(ws, "error")
        assert err_frame["code"] == "token_expired"
        assert await close_code(ws) == 4401
    wall[0] = time.time()
    async with connect(live) as ws:  # a fresh token in a new hello extends the session
        await ws.send(json.dumps({"type": "hello", "token": mint(exp=exp)}))
        await recv(ws, "snapshot")
        await ws.send(json.dumps({"type": "hello", "token": mint(exp=exp + 600)}))
        await recv(ws, "snapshot")
        wall[0] = exp + 0.5
        gw._housekeeping_once()
        assert [c.live for c in gw.clients.values()] == [True]
        await ws.send(json.dumps({"type": "resync"}))  # still served after the first token's exp
        await recv(ws, "snapshot")
    async with httpx.AsyncClient(base_url=gw.url) as http:
        r = await http.get("/operator/system/metrics", headers={"Authorization": f"Bearer {mint()}"})
        assert r.status_code == 200
        r = await http.get("/operator/system/metrics",
                           headers={"Authorization": f"Bearer {mint(exp=time.time() - 100)}"})
        assert r.status_code == 401 and r.json()["error"] == "token_expired"
