"""history/events.py against a real PostgreSQL: known events in → exactly them out, under every filter,
newest first, across pages; search by words in any case and with punctuation; hostile ``q``."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from history.events import (
    MAX_LIMIT,
    SEVERITIES,
    EventFilter,
    EventQueryError,
    decode_cursor,
    error_counts,
    search_events,
    tsquery_text,
)
from history.schema import migrate

T0 = 1_795_939_200.0  # 2026-11-29T08:00:00Z
SERVICES = ("ingest", "delivery", "evaluator")
TYPES = ("parse_error", "webhook_timeout", "log", "quarantined")


def _dt(t: float) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=round(t * 1e6))


async def insert(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Store events as the recorder does; return them with their ids."""
    out = []
    for e in events:
        row_id = await conn.fetchval(
            "INSERT INTO events (ts, service, instance, boot, seq, type, severity, message, attrs) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) RETURNING id",
            _dt(e["ts"]), e["service"], e["instance"], e.get("boot", "b1"), e["seq"], e["type"],
            e["severity"], e["message"], json.dumps(e.get("attrs", {})))
        out.append({**e, "id": row_id})
    return out


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(database_url)
    await migrate(c, now=_dt(T0))
    yield c
    await c.close()


def known_events(n: int = 240) -> list[dict[str, Any]]:
    rng = random.Random(12)
    out = []
    for k in range(n):
        svc = SERVICES[k % 3]
        # every fifth event shares its ts with the previous one: ties are ordered by id
        ts = T0 + (k - k % 5 // 4) * 7.25 + (0.5 if k % 7 == 0 else 0.0)
        out.append({"ts": ts, "service": svc, "instance": f"{svc}-{k % 2 + 1}", "seq": k + 1,
                    "type": TYPES[k % 4], "severity": SEVERITIES[rng.randrange(5)],
                    "message": f"event number {k} for tenant {rng.choice(['acme', 'globex'])}"})
    return out


def expected(events: list[dict[str, Any]], f: EventFilter) -> list[int]:
    sev = SEVERITIES[SEVERITIES.index(f.severity):] if f.severity else SEVERITIES
    keep = [e for e in events
            if (f.start is None or e["ts"] >= f.start) and (f.end is None or e["ts"] <= f.end)
            and (not f.services or e["service"] in f.services)
            and (not f.instances or e["instance"] in f.instances)
            and e["severity"] in sev and (not f.types or e["type"] in f.types)
            and (f.q is None or all(w in e["message"].split() for w in f.q.lower().split()))]
    keep.sort(key=lambda e: (e["ts"], e["id"]), reverse=True)
    return [e["id"] for e in keep]


async def all_pages(conn: asyncpg.Connection, f: EventFilter) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    pages = 0
    while True:
        page = await search_events(conn, f)
        pages += 1
        assert len(page["events"]) <= f.limit
        got += page["events"]
        if page["next"] is None:
            return got
        assert len(page["events"]) == f.limit  # a page short of the limit is the last one
        f = replace(f, before=decode_cursor(page["next"]))
        assert pages < 1000


async def test_each_filter_returns_exactly_the_known_events_in_order_across_pages(
        conn: asyncpg.Connection) -> None:
    events = await insert(conn, known_events())
    filters = [
        EventFilter(),
        EventFilter(limit=1),
        EventFilter(start=T0 + 300, end=T0 + 900),
        EventFilter(services=("delivery",)),
        EventFilter(services=("delivery", "ingest"), instances=("delivery-2", "ingest-1")),
        EventFilter(severity="warning"),
        EventFilter(severity="critical"),
        EventFilter(severity="debug"),
        EventFilter(types=("log",)),
        EventFilter(types=("log", "parse_error"), severity="error", start=T0 + 100),
        EventFilter(q="acme"),
        EventFilter(q="acme tenant", services=("ingest",), severity="info"),
        EventFilter(q="globex acme"),
        EventFilter(end=T0 - 1),
        EventFilter(start=T0 + 900, end=T0 + 300),  # an inverted range is empty, not an error
    ]
    for f in filters:
        for limit in (7, 100):
            f2 = replace(f, limit=limit) if f.limit != 1 else f
            got = await all_pages(conn, f2)
            want = expected(events, f2)
            assert [e["id"] for e in got] == want, f2
    # a page's fields are the stored event's, in the contract's shape
    page = await search_events(conn, EventFilter(limit=1))
    e = page["events"][0]
    src = next(x for x in events if x["id"] == e["id"])
    assert set(e) == {"id", "ts", "timestamp", "service", "instance", "type", "severity", "message",
                      "attrs"}
    assert (e["ts"], e["service"], e["instance"], e["type"], e["severity"], e["message"], e["attrs"]) == (
        src["ts"], src["service"], src["instance"], src["type"], src["severity"], src["message"], {})
    assert e["timestamp"] == _dt(src["ts"]).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{_dt(src['ts']).microsecond // 1000:03d}Z"


async def test_pages_do_not_shift_when_new_events_arrive(conn: asyncpg.Connection) -> None:
    events = await insert(conn, known_events(50))
    f = EventFilter(limit=10)
    first = await search_events(conn, f)
    # newer events (and one with the same ts as the oldest of the page) arrive while paging
    await insert(conn, [{**known_events(1)[0], "ts": T0 + 10_000, "seq": 1000},
                        {**known_events(1)[0], "ts": first["events"][-1]["ts"], "seq": 1001}])
    rest = await all_pages(conn, replace(f, before=decode_cursor(first["next"])))
    ids = [e["id"] for e in first["events"]] + [e["id"] for e in rest]
    want = expected(events, EventFilter())
    assert ids == want


@pytest.mark.parametrize(("message", "queries"), [
    ("POST https://hooks.ACME.example/alerts timed out after 10 s",
     ["acme", "ACME", "Acme,", "hooks.acme.example", "acme TIMED-out", "'acme'", "post alerts",
      "https", "10"]),
    ("Invalid JSON from dev-0042: Expecting ',' delimiter: line 1 column 73",
     ["dev-0042", "DEV 0042", "expecting delimiter", "column:73", "json", "invalid json dev-0042"]),
    ("Ünïcode Straße: café crème", ["straße", "STRASSE straße", "café", "CAFÉ crème"]),
])
async def test_search_ignores_case_and_punctuation(conn: asyncpg.Connection, message: str,
                                                   queries: list[str]) -> None:
    [target] = await insert(conn, [{"ts": T0, "service": "delivery", "instance": "delivery-1", "seq": 1,
                                    "type": "webhook_timeout", "severity": "error", "message": message,
                                    "attrs": {"tenant": "Nakatomi"}}])
    await insert(conn, [{"ts": T0 + 1, "service": "ingest", "instance": "ingest-1", "seq": 2,
                         "type": "log", "severity": "warning", "message": "nothing alike here"}])
    for q in queries:
        if q == "STRASSE straße":  # no stemming or folding: strasse is another word
            assert (await search_events(conn, EventFilter(q=q)))["events"] == []
            continue
        got = (await search_events(conn, EventFilter(q=q)))["events"]
        assert [e["id"] for e in got] == [target["id"]], q
    # attribute values, the type, service and instance are searched too
    for q in ("nakatomi", "webhook timeout", "webhook_timeout", "delivery-1"):
        got = (await search_events(conn, EventFilter(q=q)))["events"]
        assert [e["id"] for e in got] == [target["id"]], q
    # all words must match; word order within a punctuated term matters
    assert (await search_events(conn, EventFilter(q="acme nothing")))["events"] == []
    assert (await search_events(conn, EventFilter(q="0042-dev")))["events"] == []


HOSTILE = [
    "'", "''", '"', "\\", "\\'", "' OR 1=1 --", "'; DROP TABLE events; --", "a & b | !c", "!", "&",
    "acme:*", "acme <-> globex", "(acme", "acme)", "$1", "%", "_", "\x00", "null", "\u202e", "😀",
    "a" * 199, "a" * 201, "x " * 40, "%27%20OR%201%3D1", "'acme'::tsquery", "ts >= now()",
    ("lorem ipsum " * 900)[:10240], "\ud800"[0:0] + "tab\there", "\n\r", "'\\''", "acme\\", "ΑΒΓ",
]


@pytest.mark.parametrize("q", HOSTILE, ids=lambda q: repr(q[:24]))
async def test_hostile_q_gives_results_or_a_named_error(conn: asyncpg.Connection, q: str) -> None:
    await insert(conn, known_events(20))
    try:
        page = await search_events(conn, EventFilter(q=q))
    except EventQueryError as exc:
        assert exc.parameter == "q" and exc.message
    else:
        assert isinstance(page["events"], list)
    assert await conn.fetchval("SELECT count(*) FROM events") == 20


def test_tsquery_text_only_quotes_letters_and_digits() -> None:
    assert tsquery_text("ACME webhook_timeout, 'x'") == "'acme' & 'webhook' <-> 'timeout' & 'x'"
    assert tsquery_text("acme ACME acme!") == "'acme'"
    for q in HOSTILE:
        try:
            text = tsquery_text(q)
        except EventQueryError:
            continue
        for group in text.split(" & "):
            for word in group.split(" <-> "):
                assert word[0] == word[-1] == "'" and word[1:-1].isalnum(), (q, text)


def test_bad_filters_name_the_parameter() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"limit": 0}, "limit"), ({"limit": MAX_LIMIT + 1}, "limit"), ({"severity": "fatal"}, "severity"),
({"end": 1e12}, "to"), ({"start": -1.0}, "from"),
    ]
    for kwargs, param in cases:
        with pytest.raises(EventQueryError) as info:
            EventFilter(**kwargs)
        assert info.value.parameter == param
    for bad in ("", "12", "a_1", "1_", "_1", "1_2_3", "1" * 18 + "_1"):
        with pytest.raises(EventQueryError, match="before"):
            decode_cursor(bad)


async def test_error_counts_for_any_range(conn: asyncpg.Connection) -> None:
    events = await insert(conn, known_events())
    got = await error_counts(conn, T0 + 200, T0 + 1200)
    keep = [e for e in events if T0 + 200 <= e["ts"] <= T0 + 1200
            and e["severity"] in ("warning", "error", "critical")]
    assert got["total"] == len(keep)
    for svc in SERVICES:
        assert got["by_service"].get(svc, 0) == sum(e["service"] == svc for e in keep)
    for t in TYPES:
        assert got["by_type"].get(t, 0) == sum(e["type"] == t for e in keep)


async def test_the_live_tails_matcher_agrees_with_the_store(conn: asyncpg.Connection) -> None:
    """The tail matches q in Python; it must find exactly what the stored search finds."""
    from history.events import matches_terms, search_terms, searched_words
    rng = random.Random(3)
    vocab = ["acme", "globex", "timed", "out", "post", "dev", "0042", "hooks", "example", "retry",
             "straße", "3", "ms"]
    events = []
    for k in range(200):
        words = [rng.choice(vocab) for _ in range(rng.randrange(1, 7))]
        seps = [rng.choice([" ", "-", ".", ", ", "/", "_", ": "]) for _ in words]
        message = "".join(w + s for w, s in zip(words, seps, strict=True))
        events.append({"ts": T0 + k, "service": "delivery", "instance": "delivery-1", "seq": k + 1,
                       "type": "log", "severity": "error", "message": message,
                       "attrs": {"tenant": rng.choice(vocab)}})
    stored = await insert(conn, events)
    queries = ["acme", "ACME globex", "timed-out", "out-timed", "dev-0042", "hooks.example", "3ms",
               "3 ms", "straße", "post_retry", "delivery log acme"]
    queries += [" ".join(rng.choice(vocab) + rng.choice(["", "-dev", ".", ","]) for _ in range(2))
                for _ in range(30)]
    for q in queries:
        got = {e["id"] for e in await all_pages(conn, EventFilter(q=q, limit=MAX_LIMIT))}
        terms = search_terms(q)
        want = {e["id"] for e in stored
                if matches_terms(terms, searched_words(e["service"], e["instance"], e["type"],
                                                       e["message"], e["attrs"]))}
        assert got == want, q
