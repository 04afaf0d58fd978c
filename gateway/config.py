"""Configuration of the gateway (design.md sections 5 and 7)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["GatewayConfig"]


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: host:port to listen on (``OPSDASH_LISTEN``).
    listen: str = "127.0.0.1:8787"
    #: ``none`` (loopback only), ``token`` or ``oidc`` (``OPSDASH_AUTH``).
    auth: Literal["none", "token", "oidc"] = "none"
    #: Static bearer tokens with full access (``OPSDASH_TOKENS``, comma-separated).
    tokens: list[str] = []
    #: Read-only display tokens for wall screens.
    display_tokens: list[str] = []
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_role: str = "operator"
    #: Browser Origins allowed to open the WebSocket; empty = same host as the gateway only.
    allowed_origins: list[str] = []
    #: Directory of the built frontend.
    static_dir: str = ""
    #: The view is stale when the aggregator has been silent this long.
    stale_after_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
