"""Searching the stored events (design.md section 11): filters, full-text search, cursor pages.

    f = EventFilter(start=now - 86400, services=("delivery",), severity="warning", q="acme timeout")
    page = await search_events(conn, f)      # {"events": [...newest first...], "next": cursor | None}
    page2 = await search_events(conn, replace(f, before=decode_cursor(page["next"])))

Order and cursor. Events are returned newest first by the sender's ``ts``, ties broken by ``id``
(bigserial: arrival order), so the order is total and stable: an event that arrives while someone
pages never shifts a page. The cursor is ``<ts in µs>_<id>`` of the last event of a page, exact
(integers, no float rounding); the next page is ``(ts, id) < cursor``, a keyset condition the
``(ts DESC, id DESC)`` index answers without counting skipped rows.

Search. ``q`` is split into words at anything that is not a letter or a digit, lower-cased; every word
must match (AND). The text searched is the event's type, service, instance, message and attribute
values, split the same way (schema version 3, :data:`SEARCH_MIGRATION_SQL`), so ``ACME``,
``acme,`` and ``hooks.acme.example`` all find ``POST https://hooks.acme.example/alerts``, which the
parser of PostgreSQL's ``simple`` configuration would keep as one host token. A word written with
punctuation inside (``dev-0042``, ``webhook_timeout``, ``10.0.0.7``) must match as that sequence of
words (``<->``), not merely all its parts somewhere. The tsquery is built here from letters and digits
only and sent as a parameter, so quotes, backslashes, tsquery operators and SQL in ``q`` are just text.
bench/bench_events.py compares this tsvector + GIN with pg_trgm and with an unindexed ILIKE.

Bad filters raise :class:`EventQueryError` naming the parameter (the API answers 400 with it).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_WORDS",
    "SEARCH_MIGRATION_SQL",
    "SEVERITIES",
    "Cursor",
    "EventFilter",
    "EventQueryError",
    "at_least",
    "build_query",
    "decode_cursor",
    "encode_cursor",
    "error_counts",
    "event_json",
    "matches_terms",
    "search_events",
    "search_terms",
    "searched_words",
    "tsquery_text",
]

SEVERITIES: Final = ("debug", "info", "warning", "error", "critical")
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
#: Most words in ``q`` (each must match; more only makes a query slower, never more precise).
MAX_WORDS: Final = 32
#: Longest word in ``q``; PostgreSQL ignores longer lexemes (2,047 bytes) when it indexes a text.
MAX_WORD_CHARS: Final = 200

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US: Final = dt.timedelta(microseconds=1)
_CURSOR_RE: Final = re.compile(r"([0-9]{1,17})_([0-9]{1,19})")
# A "word" of q: letters and digits (any script), as PostgreSQL's [[:alnum:]] in the UTF-8 database.
_WORD_RE: Final = re.compile(r"[^\W_]+")
_TERM_RE: Final = re.compile(r"\S+")

#: Schema version 3 (after history/schema.py's 1 and 2): the searched text split at every character
#: that is not a letter or digit, attribute values included (see the module docstring). A generated
#: column's expression cannot be altered, so the column is dropped and added again (its GIN index
#: with it); on an empty table, at first start, that costs nothing.
SEARCH_MIGRATION_SQL: Final = """
ALTER TABLE events DROP COLUMN search;
ALTER TABLE events ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', regexp_replace(lower(
        type || ' ' || service || ' ' || instance || ' ' || message || ' '
        || jsonb_path_query_array(attrs, '$.*')::text), '[^[:alnum:]]+', ' ', 'g'))) STORED;
CREATE INDEX events_search ON events USING gin (search);
CREATE INDEX events_severity_ts ON events (severity, ts DESC);
"""


class EventQueryError(ValueError):
    """A filter that cannot be searched; ``parameter`` names the query parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """The position after which the next page starts: (ts in microseconds, id)."""

    ts_us: int
    id: int


def encode_cursor(c: Cursor) -> str:
    return f"{c.ts_us}_{c.id}"


def decode_cursor(text: str) -> Cursor:
    m = _CURSOR_RE.fullmatch(text)
    if m is None:
        raise EventQueryError("before", f"before must be a cursor from a previous page's next "
                              f"(digits_digits), got {text[:60]!r}")
    return Cursor(int(m.group(1)), int(m.group(2)))


def at_least(severity: str) -> tuple[str, ...]:
    """``severity`` and every worse one (``warning`` → warning, error, critical)."""
    if severity not in SEVERITIES:
        raise EventQueryError("severity", f"severity must be one of {', '.join(SEVERITIES)}, "
                              f"got {severity[:60]!r}")
    return SEVERITIES[SEVERITIES.index(severity):]


def search_terms(q: str) -> list[tuple[str, ...]]:
    """The terms of a search text, each a sequence of lower-case words that must appear in that order.

    >>> search_terms("ACME webhook_timeout, 'x' acme")
    [('acme',), ('webhook', 'timeout'), ('x',)]

    Raises EventQueryError when ``q`` has no letter or digit, or too many or too long words.
    """
    groups: list[tuple[str, ...]] = []
    for term in _TERM_RE.findall(q):
        words = tuple(w.lower() for w in _WORD_RE.findall(term))
        if not words:
            continue
        if any(len(w) > MAX_WORD_CHARS for w in words):
            raise EventQueryError("q", f"q has a word longer than {MAX_WORD_CHARS} characters")
        if words not in groups:
            groups.append(words)
        if sum(len(g) for g in groups) > MAX_WORDS:
            raise EventQueryError("q", f"q has more than {MAX_WORDS} words")
    if not groups:
        raise EventQueryError("q", "q must contain at least one letter or digit")
    return groups


def tsquery_text(q: str) -> str:
    """The tsquery (``to_tsquery('simple', ...)`` syntax) of a search text: every term must match.

    >>> tsquery_text("ACME webhook_timeout, 'x'")
    "'acme' & 'webhook' <-> 'timeout' & 'x'"
    """
    # only letters and digits inside the quotes: nothing in q can be read as tsquery syntax
    return " & ".join(" <-> ".join(f"'{w}'" for w in g) for g in search_terms(q))


def searched_words(service: str, instance: str, type_: str, message: str,
                   attrs: dict[str, str]) -> list[str]:
    """The words of an event that a search sees, in order: the same text and splitting as the stored
    ``search`` column (for the live tail, which matches in Python)."""
    text = " ".join((type_, service, instance, message, *attrs.values()))
    return [w.lower() for w in _WORD_RE.findall(text)]


def matches_terms(terms: list[tuple[str, ...]], words: list[str]) -> bool:
    """Whether every term occurs in ``words`` (a term of several words as a contiguous run)."""
    present = set(words)
    for term in terms:
        if not present.issuperset(term):
            return False
        if len(term) > 1:
            n = len(term)
            first = term[0]
            if not any(words[i:i + n] == list(term)
                       for i, w in enumerate(words) if w == first):
                return False
    return True


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What to search; times are Unix seconds (``start`` and ``end`` inclusive; ``start`` after ``end``
    is an empty range, not an error: the answer is simply empty)."""

    start: float | None = None
    end: float | None = None
    services: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()
    severity: str | None = None
    types: tuple[str, ...] = ()
    q: str | None = None
    limit: int = DEFAULT_LIMIT
    before: Cursor | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise EventQueryError("limit", f"limit must be in 1..{MAX_LIMIT}, got {self.limit!r}")
        for name, t in (("from", self.start), ("to", self.end)):
            if t is not None and not 0 <= t < 1e11:
                raise EventQueryError(name, f"{name} is out of range: {t!r}")
        if self.severity is not None:
            at_least(self.severity)


def _time(t: float) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=round(t * 1e6))


Window = tuple[dt.datetime | None, dt.datetime | None]


def build_query(f: EventFilter, limit: int | None = None,
                window: Window = (None, None)) -> tuple[str, list[Any]]:
    """The SQL and its arguments for one page (``limit + 1`` rows: the extra one says there is more),
    optionally only within ``window`` = [lo, hi) (the slices of a search, see search_events)."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    lo, hi = window
    if lo is not None:
        where.append(f"ts >= {arg(lo)}")
    if hi is not None:
        where.append(f"ts < {arg(hi)}")

    if f.start is not None:
        where.append(f"ts >= {arg(_time(f.start))}")
    if f.end is not None:
        where.append(f"ts <= {arg(_time(f.end))}")
    if f.services:
        where.append(f"service = ANY({arg(list(f.services))}::text[])")
    if f.instances:
        where.append(f"instance = ANY({arg(list(f.instances))}::text[])")
    if f.severity is not None and f.severity != "debug":
        where.append(f"severity = ANY({arg(list(at_least(f.severity)))}::text[])")
    if f.types:
        where.append(f"type = ANY({arg(list(f.types))}::text[])")
    if f.q is not None:
        where.append(f"search @@ to_tsquery('simple', {arg(tsquery_text(f.q))})")
    if f.before is not None:
        where.append(f"(ts, id) < ({arg(_EPOCH + f.before.ts_us * _US)}, {arg(f.before.id)})")
    sql = ("SELECT id, ts, service, instance, type, severity, message, attrs FROM events"
           + (" WHERE " + " AND ".join(where) if where else "")
           + f" ORDER BY ts DESC, id DESC LIMIT {(f.limit if limit is None else limit) + 1}")
    return sql, args


def _iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def event_json(row: Any) -> dict[str, Any]:
    """One stored event as the API gives it (design.md section 11)."""
    ts: dt.datetime = row["ts"]
    attrs = row["attrs"]
    if isinstance(attrs, str):  # asyncpg returns jsonb as text unless a codec is set
        attrs = json.loads(attrs)
    return {
        "id": int(row["id"]),
        "ts": ((ts - _EPOCH) // _US) / 1e6,
        "timestamp": _iso(ts),
        "service": row["service"],
        "instance": row["instance"] or None,
        "type": row["type"],
        "severity": row["severity"],
        "message": row["message"],
        "attrs": attrs or {},
    }


#: The slices a search walks back through, newest first, as multiples of an hour: the first page of a
#: search for common words is found in the first slice, so it never reads a week of matches to keep
#: the newest 100 (bench/bench_events.py: 5 M events, ~12,000 matches, 7 days in one query read all).
SEARCH_SLICES_H: Final = (1, 4, 24, 72, 24 * 7, 24 * 30)


async def search_events(db: asyncpg.Connection | asyncpg.Pool, f: EventFilter,
                        timeout_s: float = 10.0) -> dict[str, Any]:
    """One page: ``{"events": [...], "next": cursor or None}`` (see the module docstring).

    A full-text search runs as a few queries over growing time slices, newest first, until the page
    is full (the same rows and order as one query over the range). Each runs with JIT off (its
    compile time exceeded the query) and enough work_mem that the GIN bitmaps stay exact.
    """
    if hasattr(db, "acquire"):  # a pool: one connection for the transaction
        async with db.acquire() as conn:
            return await _search(conn, f, timeout_s)
    return await _search(db, f, timeout_s)


async def _search(conn: asyncpg.Connection, f: EventFilter, timeout_s: float) -> dict[str, Any]:
    rows: list[Any] = []
    async with conn.transaction(readonly=True):
        await conn.execute("SET LOCAL jit = off")
        await conn.execute("SET LOCAL work_mem = '32MB'")
        if f.q is None:
            sql, args = build_query(f)
            rows = list(await conn.fetch(sql, *args, timeout=timeout_s))
        else:
            anchor = _EPOCH + f.before.ts_us * _US + _US if f.before is not None else None
            if f.end is not None:
                end = _time(f.end) + _US
                anchor = end if anchor is None else min(anchor, end)
            if anchor is None:
                anchor = await conn.fetchval("SELECT max(ts) FROM events", timeout=timeout_s)
            floor = _time(f.start) if f.start is not None else await conn.fetchval(
                "SELECT min(ts) FROM events", timeout=timeout_s)
            hi: dt.datetime | None = None
            for hours in SEARCH_SLICES_H if anchor is not None and floor is not None else ():
                lo = anchor - dt.timedelta(hours=hours)
                last = lo <= floor or hours == SEARCH_SLICES_H[-1]
                window = (None if last else lo, hi)
                sql, args = build_query(f, f.limit - len(rows), window)
                rows += await conn.fetch(sql, *args, timeout=timeout_s)
                if len(rows) > f.limit or last:
                    break
                hi = lo
    more = len(rows) > f.limit
    rows = rows[:f.limit]
    nxt = None
    if more and rows:
        last_row = rows[-1]
        nxt = encode_cursor(Cursor((last_row["ts"] - _EPOCH) // _US, int(last_row["id"])))
    return {"events": [event_json(r) for r in rows], "next": nxt}


async def error_counts(conn: asyncpg.Connection | asyncpg.Pool, start: float, end: float,
                       services: tuple[str, ...] = ()) -> dict[str, Any]:
    """Events of severity warning or worse in [start, end], by service, type and severity (the seed's
    "errors in the last hour", for any range)."""
    where = "ts >= $1 AND ts <= $2 AND severity = ANY($3::text[])"
    args: list[Any] = [_time(start), _time(end), list(at_least("warning"))]
    if services:
        where += " AND service = ANY($4::text[])"
        args.append(list(services))
    rows = await conn.fetch(
        f"SELECT service, type, severity, count(*) AS n FROM events WHERE {where} "
        "GROUP BY service, type, severity ORDER BY n DESC", *args)
    by_service: dict[str, int] = {}
    by_type: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    for r in rows:
        n = int(r["n"])
        by_service[r["service"]] = by_service.get(r["service"], 0) + n
        by_type[r["type"]] = by_type.get(r["type"], 0) + n
        by_severity[r["severity"]] = by_severity.get(r["severity"], 0) + n
    return {"from": start, "to": end, "total": sum(by_service.values()), "by_service": by_service,
            "by_type": by_type, "by_severity": by_severity}
