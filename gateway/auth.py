"""Who may read the view: auth modes ``none``, ``token`` and ``oidc`` (design.md section 5).

    Authenticator.verify(token, now) -> Principal     raises AuthError (status 401 or 403)

- ``none``: everyone is an operator; the server refuses to start on a non-loopback address.
- ``token``: static bearer tokens (full) and display tokens (read-only wall screens, limited to
  ``display_sections``); compared in constant time.
- ``oidc``: Keycloak access tokens, verified with PyJWT against the realm's JWKS. The keys are fetched
  with httpx and cached (:class:`JwksCache`); the last good keys are kept while Keycloak is down; a
  token with an unknown ``kid`` triggers at most one refresh per ``jwks_min_refresh_s``; the algorithm
  is pinned (``oidc_algorithms``); issuer and audience are checked; the realm role ``oidc_role`` is
  required; leeway is at most 60 s. The principal carries ``exp`` so that the socket closes then.

Exceptions::

    AuthError            refusal; .status is 401 (who are you?) or 403 (not allowed), .code a word
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import jwt

__all__ = ["AuthError", "Authenticator", "JwksCache", "Principal", "bearer"]

log = logging.getLogger("opsdash.gateway.auth")

MAX_TOKEN_BYTES: Final = 8192


class AuthError(Exception):
    """A refused credential. ``status``: 401 (missing/invalid) or 403 (valid but not allowed)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated client. ``sections`` None = all; ``expires_at`` None = never (Unix s)."""

    subject: str
    role: str  # "operator" or "display"
    sections: frozenset[str] | None = None
    expires_at: float | None = None


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "unauthorized", "Authorization header must be 'Bearer <token>'")
    return token.strip()


@dataclass
class JwksCache:
    """The realm's signing keys, fetched asynchronously and cached.

    ``get(kid)`` returns the key or None. An unknown kid refreshes the keys, but at most once per
    ``min_refresh_s`` whatever the number of tokens asking (a flood of made-up kids costs one fetch
    per period). An unknown kid inside that period waits for the period's end, where one shared fetch
    serves every waiter (at most ``max_wait_s``): a provider that rotates its key signs with the new
    one at once (node-oidc-provider does, and Keycloak when a new key gets the highest priority), and
    refusing its tokens until the period is over dropped wall screens to the login page (found with the
    real provider in tests/peers/test_oidc_gateway.py). Keys older than ``max_age_s`` are refreshed on
    the next use; a failed fetch keeps the last good keys.
    """

    url: str
    min_refresh_s: float = 30.0
    max_age_s: float = 600.0
    timeout_s: float = 5.0
    max_wait_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    client: httpx.AsyncClient | None = None
    keys: dict[str, tuple[Any, str | None]] = field(default_factory=dict)
    fetches: int = 0
    failures: int = 0
    _fetched_at: float | None = None
    _attempted_at: float | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _next: asyncio.Task[None] | None = None

    async def refresh(self) -> bool:
        """Fetch the JWKS now; True when it succeeded. On failure the old keys stay."""
        self._attempted_at = self.clock()
        self.fetches += 1
        try:
            client = self.client or httpx.AsyncClient()
            try:
                resp = await client.get(self.url, timeout=self.timeout_s)
            finally:
                if self.client is None:
                    await client.aclose()
            resp.raise_for_status()
            jwks = resp.json()
            keys: dict[str, tuple[Any, str | None]] = {}
            for jwk in jwks.get("keys", []):
                if jwk.get("use", "sig") != "sig" or "kid" not in jwk:
                    continue
                try:
                    keys[str(jwk["kid"])] = (jwt.PyJWK(jwk).key, jwk.get("alg"))
                except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
                    log.warning("JWKS key %r skipped: %s", jwk.get("kid"), exc)
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            self.failures += 1
            log.warning("JWKS fetch from %s failed (keeping %d cached keys): %s", self.url,
                        len(self.keys), exc)
            return False
        self.keys = keys
        self._fetched_at = self.clock()
        return True

    async def get(self, kid: str) -> tuple[Any, str | None] | None:
        now = self.clock()
        stale = self._fetched_at is None or now - self._fetched_at > self.max_age_s
        if kid in self.keys and not stale:
            return self.keys[kid]
        if self._next is None or self._next.done():
            since = None if self._attempted_at is None else now - self._attempted_at
            wait = 0.0 if since is None else max(0.0, self.min_refresh_s - since)
            if wait > 0 and (kid in self.keys or wait > self.max_wait_s):
                return self.keys.get(kid)  # a known (if old) key, or too long to wait
            self._next = asyncio.create_task(self._refresh_after(wait))
        # shield: a waiter that gives up (its client went away) must not cancel the shared fetch
        await asyncio.shield(self._next)
        return self.keys.get(kid)

    async def _refresh_after(self, wait: float) -> None:
        if wait > 0:
            await self.sleep(wait)
        async with self._lock:
            await self.refresh()


class Authenticator:
    """Verifies tokens according to the configured mode. See the module docstring."""

    def __init__(self, mode: str, *, tokens: list[str] | None = None,
                 display_tokens: list[str] | None = None,
                 display_sections: list[str] | None = None,
                 issuer: str = "", audience: str = "", role: str = "operator",
                 algorithms: list[str] | None = None, leeway_s: float = 30.0,
                 jwks: JwksCache | None = None,
                 wallclock: Callable[[], float] = time.time) -> None:
        if mode not in ("none", "token", "oidc"):
            raise ValueError(f"auth mode must be none, token or oidc, got {mode!r}")
        if not 0 <= leeway_s <= 60:
            raise ValueError(f"leeway_s must be within 0..60, got {leeway_s!r}")
        self.mode = mode
        self._tokens = [t.encode() for t in tokens or []]
        self._display = [t.encode() for t in display_tokens or []]
        self.display_sections = (None if display_sections is None
                                 else frozenset(display_sections) | {"meta"})
        self.issuer = issuer
        self.audience = audience
        self.role = role
        self.algorithms = algorithms or ["RS256"]
        if any(a.lower() == "none" or a.upper().startswith("HS") for a in self.algorithms):
            raise ValueError(f"oidc algorithms must be asymmetric, got {self.algorithms!r}")
        self.leeway_s = leeway_s
        self.jwks = jwks
        self.wallclock = wallclock
        if mode == "token" and not (self._tokens or self._display):
            raise ValueError("auth mode token needs at least one token (OPSDASH_TOKENS)")
        if mode == "oidc" and (not issuer or not audience or jwks is None):
            raise ValueError("auth mode oidc needs oidc_issuer, oidc_audience and a JWKS URL")

    @property
    def required(self) -> bool:
        return self.mode != "none"

    async def verify(self, token: str | None) -> Principal:
        if self.mode == "none":
            return Principal(subject="anonymous", role="operator")
        if not token:
            raise AuthError(401, "unauthorized", "a bearer token is required")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError(401, "unauthorized", "token too long")
        if self.mode == "token":
            return self._static(token)
        return await self._oidc(token)

    def _static(self, token: str) -> Principal:
        raw = token.encode()
        # Compare with every token (no early exit), in constant time each.
        full = any([hmac.compare_digest(raw, t) for t in self._tokens])
        display = any([hmac.compare_digest(raw, t) for t in self._display])
        if full:
            return Principal(subject="token", role="operator")
        if display:
            return Principal(subject="display-token", role="display", sections=self.display_sections)
        raise AuthError(401, "unauthorized", "unknown token")

    async def _oidc(self, token: str) -> Principal:
        assert self.jwks is not None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(401, "unauthorized", f"malformed token: {exc}") from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthError(401, "unauthorized",
                            f"token algorithm {alg!r} is not allowed (expected {self.algorithms})")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthError(401, "unauthorized", "token has no key id (kid)")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError(401, "unauthorized", f"malformed token: {exc}") from exc
        if unverified.get("iss") != self.issuer:
            # before any key lookup: a token of another issuer never costs a JWKS fetch (or a wait)
            raise AuthError(401, "unauthorized", "token issuer is not the configured realm")
        found = await self.jwks.get(kid)
        if found is None:
            raise AuthError(401, "unauthorized", f"unknown signing key {kid[:64]!r}")
        key, key_alg = found
        if key_alg is not None and key_alg != alg:
            raise AuthError(401, "unauthorized", f"key {kid[:64]!r} is for {key_alg}, token uses {alg}")
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=self.leeway_s, options={"require": ["exp", "iat", "iss", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthError(401, "token_expired", "token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthError(401, "unauthorized", "token not yet valid") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(401, "unauthorized", "token audience is not this gateway") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError(401, "unauthorized", "token issuer is not the configured realm") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(401, "unauthorized", f"invalid token: {exc}") from exc
        roles = (claims.get("realm_access") or {}).get("roles") or []
        if not isinstance(roles, list) or self.role not in roles:
            raise AuthError(403, "forbidden", f"token lacks the realm role {self.role!r}")
        exp = claims.get("exp")
        return Principal(subject=str(claims.get("preferred_username") or claims.get("sub")),
                         role="operator",
                         expires_at=float(exp) + self.leeway_s if isinstance(exp, (int, float)) else None)
