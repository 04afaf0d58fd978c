"""The reconnect helper: delays double from initial to max with jitter in [d/2, d], reset on connect,
retries only on the outage exceptions (also inside a TaskGroup's exception group), never on a bug."""

from __future__ import annotations

import asyncio
import logging

import aiomqtt
import pytest

from telemetry_bus.reconnect import Backoff, reconnect_forever

log = logging.getLogger("test.reconnect")


def test_delays_double_to_the_cap_with_equal_jitter() -> None:
    lo = Backoff(0.2, 3.0, rand=lambda: 0.0)
    hi = Backoff(0.2, 3.0, rand=lambda: 0.999999)
    assert [round(lo.next_delay(), 3) for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.5, 1.5, 1.5]
    assert [round(hi.next_delay(), 3) for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.0, 3.0, 3.0]
    lo.reset()
    assert lo.failures == 0 and lo.next_delay() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(5.0, 1.0)


async def test_retries_outages_resets_on_connect_and_returns_when_the_session_ends() -> None:
    backoff = Backoff(0.2, 10.0, rand=lambda: 1.0)
    slept: list[float] = []
    lost: list[str] = []
    attempts = 0

    async def sleep(d: float) -> None:
        slept.append(round(d, 3))

    async def session() -> None:
        nonlocal attempts
        attempts += 1
        if attempts in (3, 5):
            backoff.reset()  # "connected", then the connection drops again
        if attempts == 4:
            async with asyncio.TaskGroup() as tg:  # as the probes publisher fails: inside a group
                tg.create_task(_raise(aiomqtt.MqttError("group")))
        if attempts < 6:
            raise aiomqtt.MqttError(f"down {attempts}")

    await reconnect_forever(session, backoff, what="t", logger=log, sleep=sleep,
                            on_lost=lambda e: lost.append(str(e)))
    assert attempts == 6
    assert slept == [0.2, 0.4, 0.2, 0.4, 0.2]
    assert lost == ["down 1", "down 2", "down 3", "group", "down 5"]


async def test_a_bug_is_not_retried() -> None:
    async def session() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await reconnect_forever(session, Backoff(), what="t", logger=log)


async def test_stopping_ends_the_loop_after_a_failure() -> None:
    calls = 0

    async def session() -> None:
        nonlocal calls
        calls += 1
        raise aiomqtt.MqttError("down")

    await reconnect_forever(session, Backoff(), what="t", logger=log, stopping=lambda: True)
    assert calls == 1


async def _raise(exc: Exception) -> None:
    raise exc


async def test_a_cancellation_during_a_session_is_not_an_outage() -> None:
    started = asyncio.Event()

    async def session() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError as exc:  # what aiomqtt does when cancelled mid-operation
            raise aiomqtt.MqttError("disconnected during cancellation") from exc

    task = asyncio.create_task(reconnect_forever(session, Backoff(), what="t", logger=log))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_group_with_a_bug_in_it_is_not_retried() -> None:
    async def session() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_raise(aiomqtt.MqttError("down")))
            tg.create_task(_raise(KeyError("bug")))

    with pytest.raises(ExceptionGroup):
        await reconnect_forever(session, Backoff(), what="t", logger=log)


def test_a_reporter_builds_itself_from_config() -> None:
    from telemetry_bus.config import MqttConfig, ReporterConfig
    from telemetry_bus.reporter import Reporter

    rep = Reporter.from_config("ingest", "i-1", MqttConfig(url="mqtt://u:p@broker:1884", topic_root="ops"),
                               ReporterConfig(interval_s=2.5, backoff_initial_s=0.5, backoff_max_s=4.0),
                               version="1.2.3", depends_on=["postgres"])
    assert (rep.service, rep.instance, rep.root, rep.interval_s, rep.version) == ("ingest", "i-1", "ops", 2.5,
                                                                                "1.2.3")
    assert (rep.backoff_initial_s, rep.backoff_max_s, rep.depends_on) == (0.5, 4.0, ("postgres",))
    ep = rep.brokers.current
    assert (ep.host, ep.port, ep.username, ep.password) == ("broker", 1884, "u", "p")
