"""The gateway's HTTP route table: (method, path pattern) -> handler, with auth, query and body declared.

An endpoint module adds its routes in one ``install(gw)`` function (listed in gateway/endpoints.py)::

    class HistoryParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        series: list[str] | None = None
        from_: Time | None = msgspec.field(default=None, name="from")

    async def get_history(req: HttpRequest) -> Reply:
        p: HistoryParams = req.params
        return Reply(200, {"series": ...})

    def install(gw: Gateway) -> None:
        gw.routes.get("/operator/system/history", get_history, query=HistoryParams, section="history")
        gw.routes.post("/operator/system/alerts/{fingerprint}/ack", ack, body=AckBody)

The gateway then does, in this order, for every request: rate limit (429), Host check (421), route
match (404 / 405 with ``Allow``; ``HEAD`` wherever ``GET``; ``OPTIONS`` -> 204 with ``Allow``),
bearer auth unless ``public`` (401 / 403: a display token only where the route's ``section`` is in
its ``display_sections``), the strict query parser (gateway/query.py; 400 naming the parameter), the
JSON body (``Content-Type: application/json``, at most 16 KiB, decoded into ``body``; 415 / 413 /
400), then the handler. The handler gets an :class:`HttpRequest` (with the principal, both clocks
and the parsed parameters) and returns a :class:`Reply` or ``(status, json_body)``; the gateway
encodes, gzips when accepted, adds ``ETag`` handling, ``Date``, ``Vary`` and the security headers.
A handler's exception becomes 500 ``internal`` (logged), never a traceback to the client.

Path patterns use OpenAPI's ``{name}`` for one path segment (percent-decoded, never ``/``); literal
routes win over patterned ones, so ``/operator/system/series`` is not ``/operator/system/{x}``. Every
route must be in gateway/openapi.json under the same pattern (a test checks both ways).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote

from websockets.datastructures import Headers

from gateway.auth import Principal

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["HttpRequest", "Match", "NoMatch", "Reply", "Route", "RouteTable"]

_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What a handler sees of one request."""

    method: str
    #: The path as sent (without the query), and the values of its ``{name}`` segments.
    path: str
    path_params: Mapping[str, str]
    #: The route's query Struct parsed strictly (None when the route declares no query).
    params: Any
    #: The route's body Struct decoded from JSON (None when the route declares no body).
    body: Any
    headers: Headers
    #: Who asks: None only on ``public`` routes. ``principal.role`` is ``operator`` or ``display``.
    principal: Principal | None
    #: The gateway's monotonic clock (for ages and durations) and the wall clock (Unix seconds, for
    #: times in queries and answers). Never compare one with the other.
    mono_now: float
    wall_now: float
    gateway: Gateway


@dataclass(slots=True)
class Reply:
    """A handler's answer: ``body`` is encoded as JSON (``bytes`` go out as they are).

    ``etag`` (without quotes; the gateway quotes it and makes it distinct per encoding) turns on
    conditional requests: ``If-None-Match`` that matches (weak comparison, ``*``, lists) gives 304.
    ``cache`` is the ``Cache-Control`` value.
    """

    status: int
    body: Any = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"
    etag: str | None = None
    cache: str = "no-store"


Handler = Callable[[HttpRequest], "Awaitable[Reply | tuple[int, Any]] | Reply | tuple[int, Any]"]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    #: ``public``: no auth at all; ``token``: a bearer token in modes token/oidc (anyone in mode none).
    auth: Literal["public", "token"] = "token"
    #: A display token may use this route only when ``section`` is in its ``display_sections``.
    section: str | None = None
    query: type[Any] | None = None
    body: type[Any] | None = None
    regex: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    path_params: dict[str, str]


@dataclass(frozen=True, slots=True)
class NoMatch:
    """No route for this path (``allow`` empty), or none for this method (``allow`` lists them)."""

    allow: tuple[str, ...] = ()


class RouteTable:
    """(method, path pattern) -> :class:`Route`; see the module docstring."""

    def __init__(self) -> None:
        self._literal: dict[str, dict[str, Route]] = {}
        self._patterned: list[tuple[re.Pattern[str], str, dict[str, Route]]] = []

    def add(self, method: Method, pattern: str, handler: Handler, *,
            auth: Literal["public", "token"] = "token", section: str | None = None,
            query: type[Any] | None = None, body: type[Any] | None = None) -> None:
        if not pattern.startswith("/") or "?" in pattern:
            raise ValueError(f"a route pattern is an absolute path without a query, got {pattern!r}")
        if body is not None and method == "GET":
            raise ValueError(f"GET {pattern}: a GET route takes no body")
        names = _PARAM.findall(pattern)
        if len(set(names)) != len(names):
            raise ValueError(f"{pattern}: a path parameter name appears twice")
        regex = None
        if names:
            parts = _PARAM.split(pattern)
            text = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
            regex = re.compile(text)
        route = Route(method, pattern, handler, auth, section, query, body, regex)
        if regex is None:
            methods = self._literal.setdefault(pattern, {})
        else:
            same = [m for _, p, m in self._patterned if p == pattern]
            if same:
                methods = same[0]
            else:
                methods = {}
                self._patterned.append((regex, pattern, methods))
        if method in methods:
            raise ValueError(f"{method} {pattern} is already routed")
        methods[method] = route

    def get(self, pattern: str, handler: Handler, **kw: Any) -> None:
        """A GET route (HEAD is answered from it, without the body)."""
        self.add("GET", pattern, handler, **kw)

    def post(self, pattern: str, handler: Handler, **kw: Any) -> None:
        self.add("POST", pattern, handler, **kw)

    def routes(self) -> list[Route]:
        out = [r for methods in self._literal.values() for r in methods.values()]
        return out + [r for _, _, methods in self._patterned for r in methods.values()]

    def resolve(self, method: str, path: str) -> Match | NoMatch:
        params: dict[str, str] = {}
        methods = self._literal.get(path)
        if methods is None:
            for regex, _, candidate in self._patterned:
                m = regex.fullmatch(path)
                if m is None:
                    continue
                try:
                    decoded = {k: unquote(v, errors="strict") for k, v in m.groupdict().items()}
                except UnicodeDecodeError:
                    continue
                if any("/" in v or not v for v in decoded.values()):
                    continue
                methods, params = candidate, decoded
                break
        if methods is None:
            return NoMatch()
        route = methods.get("GET" if method == "HEAD" else method)
        if route is None or method == "OPTIONS":
            return NoMatch(allow_methods(methods))
        return Match(route, params)


def allow_methods(methods: Mapping[str, Route]) -> tuple[str, ...]:
    allow = set(methods)
    if "GET" in allow:
        allow.add("HEAD")
    allow.add("OPTIONS")
    order = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    return tuple(m for m in order if m in allow)
