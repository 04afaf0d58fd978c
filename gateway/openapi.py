"""The OpenAPI document as served: gateway/openapi.json plus what the pipeline answers on every route.

Each endpoint's own answers (200, its 400/404/503, its schemas) are written in gateway/openapi.json
by the module that owns it. What the request pipeline (docs/gateway.md) can answer on *any* route is
added here, once, so no path can forget it: 400 (a query parameter it does not take, a body it does
not take), 405 with ``Allow`` (every path answers other methods so), 421 (Host not allowed), 429 with
``Retry-After`` (rate limit), 401/403 on authenticated routes, and 411/413/415 where a body is read.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Final

__all__ = ["served_document"]

_METHODS: Final = ("get", "put", "post", "delete", "patch")
_ERROR: Final = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _resp(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": _ERROR}
    if headers:
        out["headers"] = headers
    return out


_COMMON: Final = {
    "BadRequest": _resp("a query parameter or body refused by the strict parser (`parameter` names "
                        "it), or a bad Content-Length"),
    "MethodNotAllowed": _resp("method not allowed on this path", {
        "Allow": {"description": "the methods this path answers", "required": True,
                  "schema": {"type": "string", "example": "GET, HEAD, OPTIONS"}}}),
    "MisdirectedRequest": _resp("the Host header is not a name of this gateway (gateway.allowed_hosts)"),
    "TooManyRequests": _resp("too many requests from this address (handshake_rate)", {
        "Retry-After": {"description": "seconds to wait", "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]+$"}}}),
    "Unauthorized": _resp("missing or invalid bearer token (auth modes token, oidc)", {
        "WWW-Authenticate": {"description": "Bearer realm", "schema": {"type": "string"}}}),
    "Forbidden": _resp("valid token without the right (display tokens read only display_sections)"),
    "LengthRequired": _resp("a body without Content-Length (Transfer-Encoding is not supported)"),
    "ContentTooLarge": _resp("request body over 16 KiB"),
    "UnsupportedMediaType": _resp("the body must be JSON with Content-Type: application/json"),
}


def served_document(raw: bytes) -> bytes:
    """``raw`` (gateway/openapi.json) with the pipeline's answers added to every operation."""
    doc: dict[str, Any] = json.loads(raw)
    components = doc.setdefault("components", {})
    responses = components.setdefault("responses", {})
    for name, value in _COMMON.items():
        responses.setdefault(name, copy.deepcopy(value))
    for path, ops in doc.get("paths", {}).items():
        for method in _METHODS:
            op = ops.get(method)
            if not isinstance(op, dict):
                continue
            rs = op.setdefault("responses", {})
            common = {"400": "BadRequest", "405": "MethodNotAllowed", "421": "MisdirectedRequest",
                      "429": "TooManyRequests"}
            if op.get("security") != []:
                common |= {"401": "Unauthorized", "403": "Forbidden"}
            if "requestBody" in op:
                common |= {"411": "LengthRequired", "413": "ContentTooLarge",
                           "415": "UnsupportedMediaType"}
            for status, name in common.items():
                if status == "429":  # Retry-After is always sent: say so even where a path wrote its own
                    rs[status] = {"$ref": f"#/components/responses/{name}"}
                else:
                    rs.setdefault(status, {"$ref": f"#/components/responses/{name}"})
            if path == "/operator/system/live":
                rs.setdefault("426", {**_resp("not a WebSocket upgrade: send Upgrade: websocket"),
                                      "headers": {"Upgrade": {"required": True, "schema": {
                                          "type": "string", "const": "websocket"}}}})
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
