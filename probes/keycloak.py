"""Keycloak probe: ``/health/ready`` on the management interface; sessions through the admin API.

Health: 200 with ``{"status": "UP"}`` is healthy; 503 is down with the failing checks named; 404 means
health endpoints are off (``--health-enabled=true``). With client credentials configured, a
client-credentials token (cached until shortly before it expires) reads
``/admin/realms/{realm}/client-session-stats`` (values arrive as strings) and the probe reports the
sums of ``active`` and ``offline``; without credentials those metrics are null (health only).
A token or admin-API failure keeps health and makes the result "degraded" with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from probes.config import KeycloakProbeConfig
from probes.core import ProbeError, Reading, Unavailable
from probes.http import body_error, http_error, tls_context

__all__ = ["KeycloakProbe", "health_error", "keycloak_reading", "session_sums"]


def health_error(status: int, body: Any) -> ProbeError | None:
    """Pure: the /health/ready answer -> None when ready, else the reason."""
    if status == 200 and isinstance(body, Mapping) and body.get("status") == "UP":
        return None
    if status == 404:
        return ProbeError("health endpoints are off (start Keycloak with --health-enabled=true) "
                          "or wrong management_url (port 9000 from Keycloak 25)")
    if isinstance(body, Mapping):
        failing = [c for c in body.get("checks") or [] if isinstance(c, Mapping) and c.get("status") != "UP"]
        what = "; ".join(
            f"{c.get('name')}: {c.get('status')}"
            + (f" ({', '.join(f'{k} {v}' for k, v in c['data'].items())})"
               if isinstance(c.get("data"), Mapping) else "")
            for c in failing)
        head = f"not ready (HTTP {status}, status {body.get('status')})"
        return ProbeError(f"{head}: {what}" if what else head)
    return ProbeError(f"/health/ready answered HTTP {status}")


def session_sums(stats: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    active = offline = 0
    for entry in stats:
        active += int(entry.get("active") or 0)
        offline += int(entry.get("offline") or 0)
    return active, offline


def keycloak_reading(latency_ms: float, stats: Sequence[Mapping[str, Any]] | str | None) -> Reading:
    """Pure: latency and the session stats (None: no credentials; str: why they failed)."""
    if stats is None or isinstance(stats, str):
        return Reading(latency_ms=latency_ms,
                       metrics={"active_sessions": None, "offline_sessions": None},
                       details={"sessions": "no credentials configured" if stats is None else "failed"},
                       warnings=(f"sessions: {stats}",) if isinstance(stats, str) else ())
    active, offline = session_sums(stats)
    top = sorted(stats, key=lambda e: -int(e.get("active") or 0))[:10]
    return Reading(latency_ms=latency_ms,
                   metrics={"active_sessions": active, "offline_sessions": offline,
                            "clients_with_sessions": len(stats)},
                   details={"clients": [{"client_id": e.get("clientId"), "active": int(e.get("active") or 0),
                                         "offline": int(e.get("offline") or 0)} for e in top]})


class KeycloakProbe:
    """The ``keycloak`` target."""

    target = "keycloak"

    def __init__(self, settings: KeycloakProbeConfig, *, clock: Any = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._token: str | None = None
        self._token_until = 0.0
        self.token_requests = 0
        self.tls = tls_context()

    async def _get_token(self, client: httpx.AsyncClient) -> str:
        cfg = self.settings
        if self._token and self.clock() < self._token_until:
            return self._token
        self.token_requests += 1
        r = await client.post(f"{cfg.url}/realms/{cfg.realm}/protocol/openid-connect/token",
                              data={"grant_type": "client_credentials", "client_id": cfg.client_id,
                                    "client_secret": cfg.client_secret})
        if r.status_code != 200:
            raise ProbeError(f"token request refused (HTTP {r.status_code}): {body_error(r)}")
        body = r.json()
        token = body.get("access_token")
        if not isinstance(token, str):
            raise ProbeError("token answer has no access_token")
        self._token = token
        self._token_until = self.clock() + max(0.0, float(body.get("expires_in") or 60) - 30)
        return token

    async def _sessions(self, client: httpx.AsyncClient) -> list[dict[str, Any]] | str:
        cfg = self.settings
        url = f"{cfg.url}/admin/realms/{cfg.realm}/client-session-stats"
        try:
            for attempt in (1, 2):
                token = await self._get_token(client)
                r = await client.get(url, headers={"Authorization": f"Bearer {token}"})
                if r.status_code == 401 and attempt == 1:
                    self._token = None  # expired or revoked: one fresh token
                    continue
                break
        except ProbeError as exc:
            return str(exc)
        except httpx.HTTPError as exc:
            return str(http_error(exc, cfg.url))
        if r.status_code == 401:
            return f"unauthorized (HTTP 401): {body_error(r)}"
        if r.status_code == 403:
            return ("forbidden (HTTP 403): the service account needs the realm-management role "
                    "view-realm")
        if r.status_code != 200:
            return f"HTTP {r.status_code}: {body_error(r)}"
        data = r.json()
        return data if isinstance(data, list) else "client-session-stats is not a list"

    async def check(self) -> Reading:
        cfg = self.settings
        if not cfg.management_url:
            raise Unavailable("not configured (probes.keycloak.management_url)")
        async with httpx.AsyncClient(timeout=cfg.timeout_s, verify=self.tls) as client:
            t0 = time.perf_counter()
            try:
                r = await client.get(f"{cfg.management_url}/health/ready")
            except httpx.HTTPError as exc:
                raise http_error(exc, cfg.management_url) from exc
            latency_ms = (time.perf_counter() - t0) * 1000
            try:
                body = r.json()
            except ValueError:
                body = None
            problem = health_error(r.status_code, body)
            if problem is not None:
                raise problem
            stats = await self._sessions(client) if cfg.has_credentials() else None
        return keycloak_reading(latency_ms, stats)
