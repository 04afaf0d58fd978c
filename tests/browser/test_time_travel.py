"""Time travel in headless Chromium (issue 19): a moment where dispatcher-1 was gone (kill -9, the
broker's Last Will) is recorded by the real recorder; after it recovered, `/?at=<that moment>` shows
the dispatcher down with that moment's reason and the replay banner, and nothing that says live;
"Back to live" returns to the present (healthy again, banner gone, `at` gone from the URL)."""

from __future__ import annotations

import signal
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.browser.conftest import Console, Stack, _ensure_frontend_built, fresh_database, screenshot
from tests.support.servers import scaled

pytestmark = pytest.mark.browser


def _status(health: dict[str, Any], name: str) -> str | None:
    return (health.get("components", {}).get(name) or {}).get("status")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def tstack(tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str) -> Iterator[Stack]:
    """The browser stack (conftest.Stack) with history on: aggregator, recorder, gateway, the fleet and
    dispatcher-1 in its own process (so it can be killed and started again)."""
    _ensure_frontend_built()
    with fresh_database(pg_admin_dsn, "opsdash_tt") as dsn:
        s = Stack(tmp_path_factory.mktemp("tstack"))
        s.env["OPSDASH_HISTORY_URL"] = dsn
        try:
            s.opsdash("aggregator", "aggregator")
            s.opsdash("recorder", "recorder")
            s.start_gateway()
            s.spawn("fleet", ["-m", "tests.browser.fleet", s.broker.url, "fleet"])
            s.spawn("dispatcher", ["-m", "tests.browser.fleet", s.broker.url, "dispatcher"])
            s.wait_view(predicate=lambda h: all(
                _status(h, c) == "healthy" for c in ("ingest", "evaluator", "dispatcher", "delivery")))
            yield s
        finally:
            s.close()


def _until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _view_at(stack: Stack, at: float) -> dict[str, Any]:
    status, _h, body = stack.get(f"/operator/system/view?at={at:.3f}")
    assert status == 200, f"view?at={at}: {status} {body}"
    return body  # type: ignore[no-any-return]


def test_a_link_to_a_recorded_moment_shows_it_then_back_to_live(tstack: Stack, browser: Any) -> None:
    stack = tstack
    stack.stop("dispatcher", signal.SIGKILL)  # kill -9: no goodbye, only the broker's Last Will
    down = stack.wait_view(timeout=15, predicate=lambda h: _status(h, "dispatcher") == "down")
    # the moment: a little after the live view said down, so the recorder holds that tick
    moment = time.time()
    live_reason = down["components"]["dispatcher"].get("reason")
    assert live_reason, f"the live view gave no reason for the down dispatcher: {down['components']['dispatcher']}"

    # ground truth: the recorded view of that moment (docs/history.md, view?at=)
    def recorded() -> dict[str, Any] | None:
        s, _h, body = stack.get(f"/operator/system/view?at={moment:.3f}")
        return body if s == 200 else None
    _until(lambda: recorded() is not None, 15, "the moment recorded")
    then = _view_at(stack, moment)
    then_comp = then["health"]["components"]["dispatcher"]
    assert then_comp["status"] == "down"
    then_reason = then_comp["reason"]
    assert then_reason, then_comp
    assert then["meta"]["generated_at"] <= moment

    # it recovers; the present is healthy again, and says so in another way than the past did
    stack.spawn("dispatcher", ["-m", "tests.browser.fleet", stack.broker.url, "dispatcher"])
    try:
        stack.wait_view(timeout=30, predicate=lambda h: _status(h, "dispatcher") == "healthy")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ndispatcher log:\n{stack.log('dispatcher')[-2000:]}") from None

    at = datetime.fromtimestamp(round(moment, 3), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        page = ctx.new_page()
        console = Console()
        page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console.errors.append(f"pageerror: {e}"))
        page.goto(f"{stack.base}/?at={at}")
        banner = page.locator('[data-testid="replay-banner"]')
        banner.wait_for(timeout=scaled(15) * 1000)
        card = page.locator('[data-testid="comp-dispatcher"]')
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"comp-dispatcher\"]')?.dataset.status === 'down'",
            timeout=scaled(15) * 1000)
        assert card.get_attribute("data-status") == "down"
        shown_reason = page.locator('[data-testid="comp-dispatcher-reason"]').inner_text()
        assert then_reason in shown_reason, (then_reason, shown_reason)
        # the banner names the moment in local time (the browser's zone; today: the clock alone)
        local = datetime.fromtimestamp(moment).strftime("%H:%M:%S")
        assert page.locator('[data-testid="replay-time"]').inner_text() in (local, datetime.fromtimestamp(
            moment).strftime("%Y-%m-%d %H:%M:%S"))
        assert "replay" in banner.inner_text()
        assert "paused" in page.locator('[data-testid="replay-state"]').inner_text()
        # nothing looks live: the connection word is the replay's, and the page held still
        conn = page.locator('[data-testid="connection"]').inner_text()
        assert "Replay" in conn and "Live" not in conn, conn
        assert page.title().startswith("↺ replay"), page.title()
        # the other components as recorded then (the page equals view?at=, not the present)
        for name, comp in then["health"]["components"].items():
            el = page.locator(f'[data-testid="comp-{name}"]')
            if el.count():
                assert el.first.get_attribute("data-status") == comp["status"], name
        # paused: ages count on the replay clock, so the page does not go stale as wall time passes
        time.sleep(scaled(6))
        assert "stale" not in page.locator('[data-testid="last-update"]').inner_text()
        assert card.get_attribute("data-status") == "down"
        screenshot(page, "time-travel-1366x900")

        page.locator('[data-testid="back-to-live"]').click()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"comp-dispatcher\"]')?.dataset.status === 'healthy'",
            timeout=scaled(15) * 1000)
        _until(lambda: page.locator('[data-testid="replay-banner"]').count() == 0, 5, "the replay banner gone")
        query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
        assert "at" not in query, page.url
        assert "Live" in page.locator('[data-testid="connection"]').inner_text()
        console.check()
    finally:
        ctx.close()
