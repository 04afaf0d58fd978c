"""Configuration of the gateway (design.md sections 5 and 7).

Every key can be set in the ``[gateway]`` table of the TOML file or as ``OPSDASH_GATEWAY__<KEY>``;
``OPSDASH_LISTEN``, ``OPSDASH_AUTH``, ``OPSDASH_TOKENS``, ``OPSDASH_OIDC_ISSUER`` and
``OPSDASH_OIDC_AUDIENCE`` are aliases (opsdash/config.py). docs/gateway.md explains each limit.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["GatewayConfig", "parse_listen"]

Positive = Annotated[float, msgspec.Meta(gt=0)]
PosInt = Annotated[int, msgspec.Meta(ge=1)]


def parse_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host, port); raises ValueError showing the value."""
    host, sep, port_s = listen.rpartition(":")
    if not sep or not host:
        raise ValueError(f"listen must be host:port, got {listen!r}")
    host = host.removeprefix("[").removesuffix("]")
    try:
        port = int(port_s)
    except ValueError:
        raise ValueError(f"listen must end in a port number, got {listen!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"listen port must be 0..65535, got {listen!r}")
    return host, port


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: host:port to listen on (``OPSDASH_LISTEN``); port 0 picks a free port.
    listen: str = "127.0.0.1:8787"
    #: Name of this gateway in ``meta`` frames and /healthz; empty = ``<hostname>-<pid>``.
    id: str = ""
    #: ``none`` (loopback only), ``token`` or ``oidc`` (``OPSDASH_AUTH``).
    auth: Literal["none", "token", "oidc"] = "none"
    #: Static bearer tokens with full access (``OPSDASH_TOKENS``, comma-separated).
    tokens: list[str] = []
    #: Read-only display tokens for wall screens.
    display_tokens: list[str] = []
    #: View sections a display token may read (``meta`` always). ``services`` and ``probes`` carry
    #: host names, versions and boot ids, which a lobby screen does not need.
    display_sections: list[str] = msgspec.field(default_factory=lambda: [
        "health", "metrics", "capacity", "aggregates", "errors", "series", "alerts", "graph"])
    oidc_issuer: str = ""
    oidc_audience: str = ""
    #: The public Keycloak client the browser page logs in with (authorization code + PKCE).
    oidc_client_id: str = ""
    oidc_role: str = "operator"
    #: JWKS URL; empty = Keycloak's ``<issuer>/protocol/openid-connect/certs``.
    oidc_jwks_url: str = ""
    #: Accepted signing algorithms (pinned to the realm's; asymmetric only).
    oidc_algorithms: list[str] = msgspec.field(default_factory=lambda: ["RS256"])
    oidc_leeway_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 30.0
    #: At most one JWKS fetch per this many seconds for unknown key ids.
    jwks_min_refresh_s: Positive = 30.0
    #: Keys older than this are refreshed on next use (the old ones stay if the fetch fails).
    jwks_max_age_s: Positive = 600.0
    #: Browser Origins allowed to open the WebSocket; empty = same host as the gateway only.
    allowed_origins: list[str] = []
    #: Host header names accepted (421 otherwise; a port is ignored); ``["*"]`` = any. Empty = the
    #: listen address, ``localhost``, ``127.0.0.1`` and ``[::1]``, or any when listening on a wildcard
    #: address (0.0.0.0, ::). Stops DNS rebinding against a gateway on loopback.
    allowed_hosts: list[str] = []
    #: Directory of the built frontend; empty = the repository's ``frontend/dist``.
    static_dir: str = ""
    #: The view is stale when the aggregator has been silent this long.
    stale_after_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    #: While stale, a ``meta`` frame goes out at least this often.
    meta_every_s: Positive = 5.0
    #: A client must send a valid ``hello`` this soon when it gave no Authorization header.
    auth_timeout_s: Positive = 5.0
    #: Largest message a client may send (bytes); larger closes with 1009.
    max_message_bytes: Annotated[int, msgspec.Meta(ge=256, le=1 << 20)] = 4096
    #: Messages a client may send per second (token bucket, burst ``client_msg_burst``).
    client_msg_rate: Positive = 2.0
    client_msg_burst: PosInt = 10
    #: WebSocket clients at once, in all and per remote address.
    max_clients: PosInt = 20000
    max_connections_per_address: PosInt = 64
    #: HTTP requests and WebSocket handshakes per second per remote address (burst ``..._burst``).
    handshake_rate: Positive = 20.0
    handshake_burst: PosInt = 100
    #: A client whose unsent bytes exceed this misses patches (and is resynced when it drains).
    send_buffer_limit_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 512 * 1024
    #: A client that stays over the limit this long is dropped.
    lag_drop_after_s: Positive = 30.0
    #: Live tail of events (docs/websocket.md): most events sent to one client per second (burst
    #: ``tail_burst``); the rest are counted and the client is told how many.
    tail_rate_per_s: Positive = 50.0
    tail_burst: PosInt = 200
    #: ``none`` (default: measured 3x CPU and 4x memory for deflate, docs/gateway.md) or ``deflate``.
    compression: Literal["none", "deflate"] = "none"
    #: WebSocket keepalive ping interval and timeout.
    ping_interval_s: Positive = 20.0
    ping_timeout_s: Positive = 20.0
    #: Reconnect backoff to the broker (jittered, doubling up to the cap).
    backoff_initial_s: Positive = 0.2
    backoff_max_s: Positive = 10.0

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(f"backoff_max_s must be >= backoff_initial_s, got {self.backoff_max_s!r}")
        for alg in self.oidc_algorithms:
            if alg.lower() == "none" or alg.upper().startswith("HS"):
                raise ValueError(f"oidc_algorithms must be asymmetric (RS*/PS*/ES*/EdDSA), got {alg!r}")
