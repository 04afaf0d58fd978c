"""The strict query parser and the time format (pure)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import pytest

from gateway.query import QueryError, Time, parse_query, parse_time
from gateway.routes import Match, NoMatch, RouteTable

NOW = 1_796_025_600.0  # 2026-11-30T08:00:00Z


class P(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    names: list[Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,20}$")]] | None = None
    since: Time | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    ratio: float | None = None
    severity: Literal["info", "warning", "critical"] | None = None
    live: bool = False


def refused(raw: str) -> QueryError:
    with pytest.raises(QueryError) as err:
        parse_query(raw, P, NOW)
    return err.value


def test_good_queries() -> None:
    assert parse_query("", P, NOW) == P()
    p = parse_query("names=a,b_c&since=-15m&limit=20&ratio=0.25&severity=warning&live=true", P, NOW)
    assert p == P(["a", "b_c"], NOW - 900, 20, 0.25, "warning", True)
    assert parse_query("since=now", P, NOW).since == NOW
    assert parse_query("since=2026-11-30T07:00:00Z", P, NOW).since == NOW - 3600
    assert parse_query("since=2026-11-30T09:00:00%2B01:00", P, NOW).since == NOW
    assert parse_query("since=1700000000.25", P, NOW).since == 1_700_000_000.25
    assert parse_query("names=a%2Cb", P, NOW).names == ["a", "b"]  # %2C is a comma once decoded


@pytest.mark.parametrize(("raw", "param", "word"), [
    ("since=", "since", "empty"),
    ("since", "since", "empty"),
    ("limit=1_000", "limit", "integer"),
    ("limit=0x10", "limit", "integer"),
    ("limit=+5", "limit", "integer"),
    ("limit=007", "limit", "integer"),
    ("limit=0", "limit", ">= 1"),
    ("limit=1001", "limit", "<= 1000"),
    ("ratio=nan", "ratio", "decimal"),
    ("ratio=1e999", "ratio", "decimal"),
    ("ratio=inf", "ratio", "decimal"),
    ("ratio=1_0.5", "ratio", "decimal"),
    ("since=1_000", "since", "Unix seconds"),
    ("since=yesterday", "since", "Unix seconds"),
    ("since=2026-11-30T07:00:00", "since", "RFC 3339"),
    ("since=2026-11-30T07:00Z", "since", "RFC 3339"),
    ("since=2026-13-30T07:00:00Z", "since", "valid date"),
    ("since=2025-02-29T07:00:00Z", "since", "valid date"),
    ("since=2026-11-30T24:00:00Z", "since", "time of day"),
    ("since=2026-11-30T07:00:00%2B24:00", "since", "offset"),
    ("since=-15y", "since", "relative"),
    ("names=", "names", "empty"),
    ("names=,", "names", "empty"),
    ("names=a,,b", "names", "empty"),
    ("names=a,B", "names", "regex"),
    ("limit=5&limit=5", "limit", "more than once"),
    ("nope=1", "nope", "unknown"),
    ("severity=fatal", "severity", "enum"),
    ("live=yes", "live", "true or false"),
    ("names=%ff", "names", "UTF-8"),
])
def test_refusals_name_the_parameter(raw: str, param: str, word: str) -> None:
    err = refused(raw)
    assert err.parameter == param, (raw, err.parameter, err.message)
    assert word in err.message, (raw, err.message)


def test_whole_query_refusals() -> None:
    assert refused("&limit=5").parameter is None
    assert "more than" in refused("&".join(f"limit={i}" for i in range(40))).message


def test_parse_time() -> None:
    assert parse_time("-7d", NOW) == NOW - 7 * 86400
    assert parse_time("-6h", NOW) == NOW - 6 * 3600
    assert parse_time("-30s", NOW) == NOW - 30
    assert parse_time("2026-11-30", NOW) == NOW - 8 * 3600  # a date alone: midnight UTC
    assert parse_time("2026-11-30T08:00:00.5+00:00", NOW) == NOW + 0.5
    assert parse_time("2026-11-30t03:30:00.25-04:30", NOW) == NOW + 0.25
    assert parse_time("2024-02-29T00:00:00z", NOW) == 1_709_164_800.0
    assert parse_time("1970-01-01", NOW) == 0.0 and parse_time("1969-12-31", NOW) == -86400.0
    assert parse_time("2016-12-31T23:59:60Z", NOW) == 1_483_228_800.0  # a leap second
    import datetime as dt
    for y in (1, 1600, 1900, 2000, 2100, 9999):  # against the standard library's calendar
        for mo, d in ((1, 1), (2, 28), (3, 1), (12, 31)):
            want = dt.datetime(y, mo, d, tzinfo=dt.UTC).timestamp()
            assert parse_time(f"{y:04d}-{mo:02d}-{d:02d}T00:00:00Z", NOW) == want
    for bad in ("", " now", "-5", "1e9", "-1.5h", "2026-11-30T08:00Zjunk", "NaN"):
        with pytest.raises(ValueError):
            parse_time(bad, NOW)


def test_route_table() -> None:
    def h(req: object) -> tuple[int, object]:
        return 200, None

    t = RouteTable()
    t.get("/operator/system/series", h)
    t.get("/operator/system/{name}", h)
    t.post("/operator/system/alerts/{fingerprint}/ack", h)
    m = t.resolve("GET", "/operator/system/series")
    assert isinstance(m, Match) and m.route.pattern == "/operator/system/series"  # literal wins
    m = t.resolve("HEAD", "/operator/system/x")
    assert isinstance(m, Match) and m.path_params == {"name": "x"}
    m = t.resolve("POST", "/operator/system/alerts/ab%20c/ack")
    assert isinstance(m, Match) and m.path_params == {"fingerprint": "ab c"}
    assert t.resolve("GET", "/operator/system/alerts/abc/ack") == NoMatch(("POST", "OPTIONS"))
    assert t.resolve("DELETE", "/operator/system/x") == NoMatch(("GET", "HEAD", "OPTIONS"))
    assert t.resolve("GET", "/operator/system/alerts/a%2Fb/ack") == NoMatch()  # a segment has no /
    assert t.resolve("GET", "/operator/system/a/b") == NoMatch()
    with pytest.raises(ValueError, match="already"):
        t.get("/operator/system/{name}", h)
    with pytest.raises(ValueError, match="no body"):
        t.add("GET", "/x", h, body=P)
