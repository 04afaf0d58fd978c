"""Forward a Python service's log records to the ops bus as events of type ``log``.

    rep = Reporter("ingest", "ingest-1")
    await rep.start()
    logging.getLogger().addHandler(BusLogHandler(rep))   # WARNING and above, 20 records/s

Each record becomes an event on ``<root>/v1/svc/<service>/<instance>/events`` (design.md section 11):
``kind`` ``log``, ``severity`` from the level (DEBUG → debug … CRITICAL → critical), ``ts`` the
record's own time, ``message`` the formatted message (with the traceback when there is one), cut to
the contract's 2,000 characters, and in ``attrs`` the logger name (``logger``), where it was logged
(``where``: module:line) and for an exception its type (``exc_type``) and text (``exc``).

Why it never blocks the caller: ``emit`` does no I/O. It takes a token from a per-instance rate
limiter (default 20 records/s, burst 20); without a token the record is counted as dropped and nothing
else happens (no formatting). With one it is formatted, put on a bounded in-memory queue, and the
reporter's event loop is woken (at most once per batch, thread-safe) to move the queue into the
reporter, which publishes it or keeps it through a broker outage in its own bounded queue. Whatever is
dropped — over the rate, over the queue bound, or after the loop is gone — is added to the reporter's
counter ``log_records_dropped`` (per instance in the view's ``services``; the log page sums it), and
the next forwarded record says how many were suppressed before it (``attrs.suppressed``).

Records of the reporter's own machinery (``opsdash.reporter``, ``aiomqtt``, ``paho``) are never
forwarded: they are about the bus itself, and forwarding them could feed back into it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final, Protocol

__all__ = ["DROPPED_COUNTER", "LOG_KIND", "MESSAGE_LIMIT", "BusLogHandler", "severity_of"]

#: The event kind (``type`` in the events store) of forwarded log records.
LOG_KIND: Final = "log"
#: The reporter counter that counts records not forwarded.
DROPPED_COUNTER: Final = "log_records_dropped"
#: The contract's limit on an event message (``Event.message``).
MESSAGE_LIMIT: Final = 2000
_ATTR_LIMIT: Final = 128
_EXCLUDED: Final = ("opsdash.reporter", "aiomqtt", "paho")


class _Sink(Protocol):
    """What the handler needs of a :class:`telemetry_bus.reporter.Reporter`."""

    def event(self, kind: str, message: str = "", severity: str = "error",
              attrs: dict[str, str] | None = None, ts: float | None = None) -> None: ...

    def inc(self, name: str, n: int = 1) -> None: ...


def severity_of(levelno: int) -> str:
    """The event severity of a logging level (custom levels fall to the nearest one below)."""
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class BusLogHandler(logging.Handler):
    """A :class:`logging.Handler` that forwards records to a reporter (see the module docstring).

    Create it where the reporter's event loop runs (or pass ``loop``); ``emit`` may then be called from
    any thread. ``rate_per_s`` and ``burst`` bound the records forwarded per instance; ``queue_size``
    bounds what waits for the loop.
    """

    def __init__(self, reporter: _Sink, level: int = logging.WARNING, *, rate_per_s: float = 20.0,
                 burst: int | None = None, queue_size: int = 1000,
                 loop: asyncio.AbstractEventLoop | None = None,
                 exclude: Iterable[str] = _EXCLUDED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(level)
        if not 0 < rate_per_s <= 1e6:
            raise ValueError(f"rate_per_s must be in (0, 1e6], got {rate_per_s!r}")
        burst = max(1, round(rate_per_s)) if burst is None else burst
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size!r}")
        self.reporter = reporter
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.queue_size = queue_size
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError as exc:
                raise RuntimeError("create BusLogHandler inside the reporter's event loop, "
                                   "or pass loop=") from exc
        self.loop = loop
        self.clock = clock
        self.exclude = tuple(exclude)
        self.forwarded = 0
        self.dropped = 0  # all drops since start (also added to the reporter counter)
        self._tokens = float(burst)
        self._refilled = clock()
        self._queue: deque[tuple[str, str, dict[str, str], float]] = deque()
        self._unreported = 0  # drops not yet added to the reporter counter (the loop does that)
        self._suppressed = 0  # drops since the last forwarded record
        self._scheduled = False
        self._excluded_names: dict[str, bool] = {}

    def _excluded(self, name: str) -> bool:
        known = self._excluded_names.get(name)
        if known is None:
            known = any(name == p or name.startswith(p + ".") for p in self.exclude)
            if len(self._excluded_names) < 4096:
                self._excluded_names[name] = known
        return known

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle holds self.lock around emit: the state below changes in one thread at a time.
        # The drop path is a few attribute reads and one clock call: a flood costs the caller ~1 us
        # a record here, and nothing is formatted.
        if self._excluded(record.name):
            return
        now = self.clock()
        tokens = self._tokens + (now - self._refilled) * self.rate_per_s
        tokens = min(tokens, self.burst)
        self._refilled = now
        if tokens < 1 or len(self._queue) >= self.queue_size:
            self._tokens = tokens
            self.dropped += 1
            self._unreported += 1
            self._suppressed += 1
            if not self._scheduled:
                self._schedule()
            return
        self._tokens = tokens - 1
        try:
            self._queue.append(self._event(record))
        except Exception:
            self.handleError(record)
            return
        self._suppressed = 0
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nothing can be forwarded any more
            self._scheduled = False
            self._queue.clear()

    def _event(self, record: logging.LogRecord) -> tuple[str, str, dict[str, str], float]:
        message = record.getMessage()
        attrs = {"logger": record.name[:_ATTR_LIMIT],
                 "where": f"{record.module}:{record.lineno}"[:_ATTR_LIMIT]}
        if record.exc_info and record.exc_info[0] is not None:
            etype, value, tb = record.exc_info
            attrs["exc_type"] = etype.__qualname__[:_ATTR_LIMIT]
            attrs["exc"] = str(value)[:_ATTR_LIMIT]
            if len(message) < MESSAGE_LIMIT:
                message += "\n" + "".join(traceback.format_exception(etype, value, tb))
        elif record.exc_text:
            message += "\n" + record.exc_text
        if self._suppressed:
            attrs["suppressed"] = str(self._suppressed)
        if len(message) > MESSAGE_LIMIT:
            message = message[:MESSAGE_LIMIT - 1] + "…"
        return severity_of(record.levelno), message, attrs, record.created

    def _drain(self) -> None:
        """On the reporter's loop: move the queue into the reporter, add the drops to its counter."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._scheduled = False
            batch = list(self._queue)
            self._queue.clear()
            dropped, self._unreported = self._unreported, 0
        for severity, message, attrs, ts in batch:
            self.reporter.event(LOG_KIND, message, severity=severity, attrs=attrs, ts=ts)
        self.forwarded += len(batch)
        if dropped:
            self.reporter.inc(DROPPED_COUNTER, dropped)
