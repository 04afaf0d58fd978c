"""httpx errors translated once, at this boundary, into operator-facing reasons."""

from __future__ import annotations

import ssl
from functools import cache

import httpx

from probes.core import ProbeError

__all__ = ["body_error", "http_error", "tls_context"]


@cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every probe client: building one per ``httpx.AsyncClient`` blocks the event
    loop for 30-60 ms (it loads the CA bundle), which a probe must never do on each check."""
    return ssl.create_default_context()


def http_error(exc: httpx.HTTPError, where: str) -> ProbeError:
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not isinstance(cause, OSError) and cause.__cause__ is not None:
        cause = cause.__cause__
    match exc:
        case httpx.ConnectError() if isinstance(cause, ConnectionRefusedError) or "refused" in str(exc):
            return ProbeError(f"connection refused: nothing listens on {where}")
        case httpx.ConnectTimeout():
            return ProbeError(f"connect timeout: {where}")
        case httpx.TimeoutException():
            return ProbeError(f"timeout: {where} did not answer in time")
        case httpx.ConnectError():
            return ProbeError(f"unreachable: {where}: {exc}")
        case httpx.RemoteProtocolError():
            return ProbeError(f"protocol error from {where}: {exc}")
    return ProbeError(f"{where}: {type(exc).__name__}: {exc}")


def body_error(resp: httpx.Response, limit: int = 200) -> str:
    """The error text of a non-2xx answer: ``{"error": ...}``/``{"message": ...}`` or the body."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error_description", "error", "message"):
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])[:limit]
    return resp.text.strip()[:limit] or resp.reason_phrase
