"""Reconnect with jittered, capped exponential backoff: the one loop every bus client uses.

    backoff = Backoff(initial_s=0.2, max_s=10.0)

    async def session() -> None:
        async with aiomqtt.Client(...) as client:
            backoff.reset()                       # connected: the next outage starts small again
            ...                                   # raises MqttError when the connection drops

    await reconnect_forever(session, backoff, what="aggregator", logger=log)

With several brokers (``OPSDASH_MQTT_URL`` lists the nodes of a cluster), pass ``Brokers``: the
session connects to ``brokers.current`` and every failure moves it to the next node before the delay,
so a part that loses its node is on the next one within the first (short) backoff.

Delays are drawn uniformly from ``[d/2, d]`` ("equal jitter"), ``d`` doubling from ``initial_s`` to
``max_s``: a fleet that lost its broker at the same instant does not come back in lockstep, and a long
outage costs one attempt per ``max_s`` at most.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import aiomqtt

from telemetry_bus.config import MqttEndpoint

__all__ = ["Backoff", "Brokers", "reconnect_forever"]


class Brokers:
    """The brokers of ``mqtt.url`` taken in turn: connect to ``current``, ``advance`` after a failure."""

    def __init__(self, endpoints: list[MqttEndpoint]) -> None:
        if not endpoints:
            raise ValueError("need at least one broker")
        self.endpoints = list(endpoints)
        self._i = 0
        #: how often a failure moved this part to another broker
        self.failovers = 0

    @property
    def current(self) -> MqttEndpoint:
        return self.endpoints[self._i]

    def advance(self) -> None:
        if len(self.endpoints) > 1:
            self._i = (self._i + 1) % len(self.endpoints)
            self.failovers += 1

    def __str__(self) -> str:
        return f"{self.current.host}:{self.current.port}"


class Backoff:
    """The delays between attempts (pure: the random source is injectable)."""

    def __init__(self, initial_s: float = 0.2, max_s: float = 10.0,
                 rand: Callable[[], float] = random.random) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got initial_s={initial_s!r}, max_s={max_s!r}")
        self.initial_s = initial_s
        self.max_s = max_s
        self._rand = rand
        self._next = initial_s
        #: attempts that failed since the last reset
        self.failures = 0

    def reset(self) -> None:
        self._next = self.initial_s
        self.failures = 0

    def next_delay(self) -> float:
        d = self._next
        self._next = min(d * 2, self.max_s)
        self.failures += 1
        return d / 2 + self._rand() * d / 2


async def reconnect_forever(
    session: Callable[[], Awaitable[None]],
    backoff: Backoff,
    *,
    what: str,
    logger: logging.Logger,
    retry_on: tuple[type[Exception], ...] = (aiomqtt.MqttError,),
    on_lost: Callable[[Exception], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    stopping: Callable[[], bool] = lambda: False,
    brokers: Brokers | None = None,
) -> None:
    """Run ``session`` again after each ``retry_on`` failure (also inside an exception group, as a
    TaskGroup raises), sleeping ``backoff.next_delay()`` between; returns when ``session`` returns or,
    after a failure, when ``stopping()`` is true. Any other exception propagates: a bug is not an
    outage. The session calls ``backoff.reset()`` once connected. With ``brokers``, each failure moves
    to the next broker first."""
    task = asyncio.current_task()
    while True:
        # Python 3.11's TaskGroup can leave its parent's cancel count raised after a child failed, so
        # a real cancellation is a count above the one seen before this attempt.
        cancels = task.cancelling() if task is not None else 0
        try:
            await session()
            return
        except retry_on as exc:
            lost, nested = exc, False
        except BaseExceptionGroup as group:  # from a TaskGroup inside the session
            if group.split(retry_on)[1] is not None:
                raise  # something else failed too: not only an outage
            lost, nested = _first(group), True
        if not nested and task is not None and task.cancelling() > cancels:
            raise asyncio.CancelledError  # aiomqtt can turn a cancellation into MqttError
        if on_lost is not None:
            on_lost(lost)
        if stopping():
            return
        delay = backoff.next_delay()
        # The first failure of an outage is a warning; the retries that follow are routine.
        level = logging.WARNING if backoff.failures == 1 else logging.INFO
        if brokers is not None and len(brokers.endpoints) > 1:
            failed = str(brokers)
            brokers.advance()
            logger.log(level, "%s: broker %s failed (%s); trying %s in %.1f s", what, failed, lost,
                       brokers, delay)
        else:
            logger.log(level, "%s: broker connection failed (%s); retrying in %.1f s", what, lost, delay)
        await sleep(delay)


def _first(group: BaseExceptionGroup[BaseException]) -> Exception:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, Exception)
    return exc
