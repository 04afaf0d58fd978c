"""HTTP request bodies on the websockets server: a connection class that reads them before routing.

websockets parses only a request's head (``Request.parse`` refuses a ``Content-Length`` other than 0,
so a POST with a body is closed without an answer). :class:`BodyConnection` (passed to
``serve(create_connection=...)``) replaces the sans-I/O protocol's request parser with one that reads
the head with websockets' own line and header parsers, then up to :data:`MAX_BODY_BYTES` of body by
``Content-Length``, and hands :class:`BodyRequest` (a websockets ``Request`` with ``body``) to
``process_request``. The WebSocket upgrade itself is unchanged (a handshake has no body).

Why this and not another server: the WebSocket fan-out relies on websockets (``broadcast``, the
transport's buffer size); a second HTTP server on another port or a library that brings its own
WebSocket (aiohttp) would split or replace that. Reading the body in the same parser keeps one port,
one connection object and websockets' limits (line length, header count, ``open_timeout`` for the
whole request, so a slow body cannot hold a connection longer than a slow head).

What is not read: ``Transfer-Encoding`` (chunked) bodies and bodies over the limit; the request is
still routed, with ``body_error`` set (411 / 413 / 400), and the gateway answers with that status
and closes the connection (no keep-alive: websockets closes after any plain HTTP answer).
"""

from __future__ import annotations

import http
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import HeaderLineTooLong, InvalidMessage, RequestLineTooLong, TooManyHeaders
from websockets.http11 import Request, parse_headers, parse_line
from websockets.protocol import CONNECTING, Protocol
from websockets.server import ServerProtocol

__all__ = ["MAX_BODY_BYTES", "BodyConnection", "BodyRequest"]

#: Largest request body read (JSON for ack and silences is a few hundred bytes).
MAX_BODY_BYTES: Final = 16 * 1024


@dataclass
class BodyRequest(Request):
    """A request with its body (``b""`` when none); ``body_error`` (status, why) when not read."""

    body: bytes = b""
    body_error: tuple[int, str] | None = None


def _parse_request(protocol: ServerProtocol) -> Generator[None, None, BodyRequest]:
    """Head and body of one request (the head as ``websockets.http11.Request.parse`` reads it)."""
    reader = protocol.reader
    try:
        request_line = yield from parse_line(reader.read_line, RequestLineTooLong)
    except EOFError as exc:
        raise EOFError("connection closed while reading HTTP request line") from exc
    try:
        raw_method, raw_path, raw_protocol = request_line.split(b" ", 2)
    except ValueError:
        raise ValueError(f"invalid HTTP request line: {bytes(request_line[:100])!r}") from None
    if raw_protocol not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ValueError(f"unsupported protocol: {bytes(request_line[:100])!r}")
    method, path = raw_method.decode("ascii"), raw_path.decode("ascii")
    headers = yield from parse_headers(reader.read_line)
    request = BodyRequest(path, headers, method, raw_protocol.decode("ascii"))
    if "Transfer-Encoding" in headers:
        request.body_error = (411, "request bodies need Content-Length (no Transfer-Encoding)")
        return request
    lengths = set(headers.get_all("Content-Length"))
    if not lengths:
        return request
    length_s = next(iter(lengths)) if len(lengths) == 1 else "?"
    if not length_s.isdigit() or len(length_s) > 12:
        request.body_error = (400, f"bad Content-Length {', '.join(sorted(lengths))[:60]!r}")
        return request
    length = int(length_s)
    if length > MAX_BODY_BYTES:
        request.body_error = (413, f"request body of {length} bytes is over the limit of "
                              f"{MAX_BODY_BYTES} bytes")
        return request
    if length:
        if headers.get("Expect", "").lower() == "100-continue":
            protocol.writes.append(b"HTTP/1.1 100 Continue\r\n\r\n")  # flushed after this read
        request.body = bytes((yield from reader.read_exact(length)))
    return request


def _parser(protocol: ServerProtocol) -> Generator[None]:
    """``ServerProtocol.parse`` with bodies: the same refusals for a bad head, then frames."""
    if protocol.state is CONNECTING:
        try:
            request = yield from _parse_request(protocol)
        except Exception as exc:
            protocol.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
            protocol.handshake_exc.__cause__ = exc
            if isinstance(exc, (RequestLineTooLong, HeaderLineTooLong, TooManyHeaders)):
                status = (http.HTTPStatus.REQUEST_URI_TOO_LONG if isinstance(exc, RequestLineTooLong)
                          else http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                protocol.send_response(protocol.reject(status, f"{exc}\n"))
            else:
                protocol.send_eof()
                protocol.parser = protocol.discard()
                next(protocol.parser)
            yield
            return
        protocol.events.append(request)
        if request.body_error is not None:
            # The body was not read, and its bytes are no WebSocket frames: drop them until the
            # answer (which ends the connection) replaces this parser.
            while not (yield from protocol.reader.at_eof()):
                protocol.reader.discard()
            while True:
                yield
    yield from Protocol.parse(protocol)


class BodyConnection(ServerConnection):
    """A websockets ``ServerConnection`` whose requests carry their body (see the module docstring)."""

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        super().__init__(protocol, *args, **kwargs)
        # Protocol.__init__ started the stock parser, suspended before reading anything: replace it.
        protocol.parser.close()
        protocol.parser = _parser(protocol)
        next(protocol.parser)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when ``Accept-Encoding`` allows gzip (``gzip`` or ``*`` with a q-value above 0)."""
    for part in (accept_encoding or "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip().replace(" ", "")
            if q.lower().startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


def none_match(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 section 13.1.2: does ``If-None-Match`` match the current ``etag``?

    ``*`` matches any current representation; otherwise a comma-separated list of entity tags,
    compared weakly (``W/"x"`` matches ``"x"``).
    """
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == opaque for t in if_none_match.split(","))
