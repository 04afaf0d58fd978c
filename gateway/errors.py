"""The one error type for client input that breaks the protocol, and the one way to decode JSON.

A client's bad input (a frame that is not JSON, too deep, the wrong shape, an unknown message type, a
bad query or body) raises :class:`ProtocolError`; the gateway answers it as documented (``error``
frame + close 1008, or HTTP 400) and counts it. Anything else a handler raises is a bug: logged with
its traceback, answered 1011 / 500, and never mistaken for the client's fault (a ``ValueError`` from
a bug used to close the client as ``bad_request``).
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

__all__ = ["CLOSE_POLICY", "CLOSE_UNAUTHORIZED", "ProtocolError", "decode_json"]

CLOSE_POLICY: Final = 1008
CLOSE_UNAUTHORIZED: Final = 4401

T = TypeVar("T")


class ProtocolError(Exception):
    """Refused client input. ``code`` is the word in the error frame / JSON; ``close`` the close code."""

    def __init__(self, message: str, code: str = "bad_request", close: int = CLOSE_POLICY) -> None:
        super().__init__(message)
        self.message = message[:200]
        self.code = code
        self.close = close


def decode_json(data: bytes | str, type: type[T] = Any) -> T:  # type: ignore[assignment]
    """``data`` decoded (into ``type``); every way it can fail raises ProtocolError.

    Deep nesting makes msgspec (and ``json``) raise RecursionError, not a DecodeError: caught here,
    so ``[[[[...]]]]`` of a few KB is a bad request like any other undecodable input.
    """
    try:
        return msgspec.json.decode(data, type=type)
    except msgspec.ValidationError as exc:
        raise ProtocolError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("JSON nested too deeply") from None
