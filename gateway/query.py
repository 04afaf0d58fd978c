"""The strict query-string parser every HTTP endpoint uses, and the time format of design.md section 8.

An endpoint declares its parameters once, as a frozen msgspec Struct whose fields are the parameter
names (``Annotated`` with ``msgspec.Meta`` for ranges, patterns and docs)::

    class SeriesParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        names: list[Annotated[str, msgspec.Meta(pattern=NAME)]] | None = None
        since: Time | None = None

    params = parse_query(raw_query, SeriesParams, now=wall_clock())  # -> SeriesParams, or QueryError

Field types understood: ``int``, ``float``, ``bool`` (``true``/``false``), ``str``, ``Literal[...]``
of strings, :data:`Time` (Unix seconds out; ISO 8601, ``now``, ``-15m`` in) and ``list[X]`` of those
(comma-separated). ``X | None = None`` makes a parameter optional. Refused with :class:`QueryError`
naming the parameter (the gateway answers 400 ``bad_request`` with ``"parameter"``): an unknown
parameter, a repeated one, an empty value (``since=``), an empty list item (``names=a,,b``, ``names=,``),
a malformed number (``1_000``, ``0x10``, ``nan``, ``1e999``), bad percent-encoding, or a value outside
the declared range. No silent fallback: what a client sends is either understood exactly or refused.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal, NewType, TypeVar, get_args, get_origin
from urllib.parse import unquote_plus

import msgspec

__all__ = ["MAX_PARAMS", "QueryError", "Time", "parse_query", "parse_time"]

#: Unix seconds; in a query: Unix seconds, an RFC 3339 date-time (ISO 8601 with seconds and a zone:
#: ``2026-11-30T08:00:00Z``, ``...T09:00:00.5+01:00``) or full date (UTC midnight), ``now``, or
#: relative to now ``-30s``, ``-15m``, ``-6h``, ``-7d``, ``-2w``. Exactly what the OpenAPI document's
#: ``Time`` schema says (its ``format: date-time`` / ``date`` are RFC 3339's), so a generated valid
#: value is always accepted.
Time = NewType("Time", float)

MAX_PARAMS: Final = 32
_MAX_VALUE: Final = 4096
_INT: Final = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_FLOAT: Final = re.compile(r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,17})?")
_UNIX: Final = re.compile(r"(0|[1-9][0-9]{0,11})(\.[0-9]{1,9})?")
_RELATIVE: Final = re.compile(r"-([0-9]{1,9})([smhdw])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# RFC 3339 full-date, or date-time (any fraction digits, T/Z in either case, numeric offset).
_RFC3339: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                             r"(\.[0-9]{1,30})?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2})))?")

S = TypeVar("S", bound=msgspec.Struct)


class QueryError(ValueError):
    """A refused query parameter; ``parameter`` names it (None when the query as a whole is bad)."""

    def __init__(self, parameter: str | None, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


def parse_time(value: str, now: float) -> float:
    """One time of design.md section 8 as Unix seconds; ``now`` is the wall clock (Unix seconds).

    >>> parse_time("-15m", 1000.0), parse_time("now", 5.0), parse_time("1700000000.5", 0)
    (100.0, 5.0, 1700000000.5)
    >>> parse_time("2026-11-30T08:00:00Z", 0)
    1796025600.0

    Raises ValueError saying which forms are accepted.
    """
    if value == "now":
        return now
    m = _RELATIVE.fullmatch(value)
    if m:
        return now - int(m.group(1)) * _UNIT_S[m.group(2)]
    if _UNIX.fullmatch(value):
        return float(value)
    m = _RFC3339.fullmatch(value)
    if m:
        return _rfc3339(m)
    raise ValueError(f"expected Unix seconds, an RFC 3339 time (2026-11-30T08:00:00Z) or date, 'now' "
                     f"or a relative time like -15m, -6h, -7d; got {value!r:.60}")


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm; any year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _rfc3339(m: re.Match[str]) -> float:
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    days_in = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    if not 1 <= mo <= 12 or not 1 <= d <= days_in[mo - 1]:
        raise ValueError(f"not a valid date: {m.group(0)[:10]!r}")
    t = _days_from_civil(y, mo, d) * 86400.0
    if m.group(4) is None:
        return t  # a date alone: midnight UTC
    hh, mi, ss = int(m.group(4)), int(m.group(5)), int(m.group(6))
    if hh > 23 or mi > 59 or ss > 60:  # 60: a leap second (RFC 3339 5.7)
        raise ValueError(f"not a valid time of day: {m.group(0)[11:19]!r}")
    t += hh * 3600 + mi * 60 + ss + (float("0" + m.group(7)) if m.group(7) else 0.0)
    if m.group(9) is not None:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise ValueError(f"not a valid UTC offset: {m.group(0)[-6:]!r}")
        t -= (1 if m.group(9) == "+" else -1) * (oh * 3600 + om * 60)
    return t


def _scalar(tp: Any) -> Callable[[str, float], Any]:
    """The converter of one raw (decoded, non-empty) value of annotation ``tp``."""
    if get_origin(tp) is Annotated:
        return _scalar(get_args(tp)[0])
    if tp is Time:
        return parse_time
    if tp is bool:
        def boolean(v: str, _now: float) -> bool:
            if v in ("true", "false"):
                return v == "true"
            raise ValueError(f"expected true or false, got {v!r:.60}")
        return boolean
    if tp is int:
        def integer(v: str, _now: float) -> int:
            if not _INT.fullmatch(v):
                raise ValueError(f"expected an integer, got {v!r:.60}")
            return int(v)
        return integer
    if tp is float:
        def number(v: str, _now: float) -> float:
            if not _FLOAT.fullmatch(v):
                raise ValueError(f"expected a decimal number, got {v!r:.60}")
            f = float(v)
            if not math.isfinite(f):  # pragma: no cover - the pattern admits only finite numbers
                raise ValueError(f"expected a finite number, got {v!r:.60}")
            return f
        return number
    if tp is str or get_origin(tp) is Literal:
        return lambda v, _now: v  # Literal values and str patterns are checked by msgspec below
    raise TypeError(f"query parameter type {tp!r} is not supported")


def _converter(tp: Any) -> tuple[Callable[[str, float], Any], bool]:
    """(converter of the raw value, optional?) for a field annotation."""
    optional = False
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        optional = len(args) < len(get_args(tp))
        if len(args) != 1:
            raise TypeError(f"query parameter type {tp!r}: one type (or X | None) only")
        tp = args[0]
    inner = get_args(tp)[0] if get_origin(tp) is Annotated else tp
    if get_origin(inner) is list:
        item = _scalar(get_args(inner)[0])

        def items(v: str, now: float) -> list[Any]:
            parts = v.split(",")
            for i, p in enumerate(parts):
                if not p:
                    raise ValueError(f"item {i + 1} of the comma-separated list is empty")
            return [item(p, now) for p in parts]
        return items, optional
    return _scalar(tp), optional


_specs: dict[type[Any], dict[str, tuple[Callable[[str, float], Any], bool]]] = {}


def _spec(struct: type[S]) -> dict[str, tuple[Callable[[str, float], Any], bool]]:
    spec = _specs.get(struct)
    if spec is None:
        hints = typing.get_type_hints(struct, include_extras=True)
        # keyed by the wire name: a field ``from_`` declared with ``msgspec.field(name="from")`` is ``from``
        spec = _specs[struct] = {f.encode_name: _converter(hints[f.name])
                                 for f in msgspec.structs.fields(struct)}
    return spec


def parse_query(raw: str, struct: type[S], now: float) -> S:
    """``raw`` (the part after ``?``, still percent-encoded) into ``struct``; see the module docstring.

    ``now`` is the wall clock (Unix seconds) for :data:`Time` parameters. Raises QueryError.
    """
    spec = _spec(struct)
    values: dict[str, Any] = {}
    if raw:
        fields = raw.split("&")
        if len(fields) > MAX_PARAMS:
            raise QueryError(None, f"more than {MAX_PARAMS} query parameters")
        for field in fields:
            name_raw, eq, value_raw = field.partition("=")
            try:
                name = unquote_plus(name_raw, errors="strict")
                value = unquote_plus(value_raw, errors="strict")
            except UnicodeDecodeError:
                raise QueryError(name_raw[:60] or None, "query is not valid percent-encoded UTF-8") \
                    from None
            if not name:
                raise QueryError(None, f"empty parameter name in the query (field {field[:60]!r})")
            if name not in spec:
                known = ", ".join(spec) or "none"
                raise QueryError(name[:60], f"unknown parameter {name[:60]!r} (known: {known})")
            if name in values:
                raise QueryError(name, f"parameter {name!r} is given more than once")
            if not eq or not value:
                raise QueryError(name, f"parameter {name!r} is empty")
            if len(value) > _MAX_VALUE:
                raise QueryError(name, f"parameter {name!r} is longer than {_MAX_VALUE} characters")
            try:
                values[name] = spec[name][0](value, now)
            except ValueError as exc:
                raise QueryError(name, f"parameter {name!r}: {exc}") from None
    try:
        return msgspec.convert(values, struct)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = re.search(r"\$\.([A-Za-z_][A-Za-z0-9_]*)", text)
        param = m.group(1) if m else None
        if param is None:
            m = re.search(r"required field `([A-Za-z_][A-Za-z0-9_]*)`", text)
            param = m.group(1) if m else None
        text = text.replace("Object missing required field", "missing required parameter")
        raise QueryError(param, f"parameter {param!r}: {text}" if param else text) from None
