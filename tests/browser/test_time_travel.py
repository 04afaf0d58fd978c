"""Time travel in headless Chromium (issue 19): a moment where dispatcher-1 was gone (kill -9, the
broker's Last Will) is recorded by the real recorder; after it recovered, `/?at=<that moment>` shows
the dispatcher down with that moment's reason and the replay banner, and nothing that says live;
"Back to live" returns to the present (healthy again, banner gone, `at` gone from the URL)."""

from __future__ import annotations

import json
import math
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import (
    ARTIFACTS,
    Console,
    Stack,
    _ensure_frontend_built,
    fresh_database,
    screenshot,
)
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


@pytest.fixture(scope="module")
def down_moment(tstack: Stack) -> tuple[float, dict[str, Any]]:
    """A recorded moment with dispatcher-1 gone, and the view ``view?at=`` gives for it; afterwards
    the dispatcher is back and healthy."""
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
    assert then_reason == live_reason, (then_reason, live_reason)
    assert then["meta"]["generated_at"] <= moment

    # it recovers; the present is healthy again, and says so in another way than the past did
    stack.spawn("dispatcher", ["-m", "tests.browser.fleet", stack.broker.url, "dispatcher"])
    try:
        stack.wait_view(timeout=30, predicate=lambda h: _status(h, "dispatcher") == "healthy")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ndispatcher log:\n{stack.log('dispatcher')[-2000:]}") from None

    return moment, then


def _iso(t: float) -> str:
    return datetime.fromtimestamp(round(t, 3), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_link_to_a_recorded_moment_shows_it_then_back_to_live(
        tstack: Stack, browser: Any, down_moment: tuple[float, dict[str, Any]]) -> None:
    stack = tstack
    moment, then = down_moment
    then_reason = then["health"]["components"]["dispatcher"]["reason"]
    at = _iso(moment)
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

        # another page keeps the moment: the component's page shows the dispatcher as it was then
        page.locator('[data-testid="comp-dispatcher"] a').first.click()
        page.wait_for_url("**/component/dispatcher?at=*", timeout=scaled(5) * 1000)
        query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
        assert abs(datetime.fromisoformat(query["at"][0].replace("Z", "+00:00")).timestamp() - moment) < 0.002
        banner.wait_for(timeout=scaled(5) * 1000)
        page.wait_for_function("() => document.body.innerText.includes('dispatcher-1: lost')",
                               timeout=scaled(15) * 1000)
        screenshot(page, "time-travel-component-1366x900")
        assert page.locator('[data-testid="instances-not-recorded"]').count() == 1
        page.go_back()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"comp-dispatcher\"]')?.dataset.status === 'down'",
            timeout=scaled(15) * 1000)

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


SIZES = [  # (name, width, height, wall): tests/browser/test_layouts.py's sizes
    ("phone-360x740", 360, 740, False),
    ("phone-390x844", 390, 844, False),
    ("tablet-768x1024", 768, 1024, False),
    ("laptop-1366x768", 1366, 768, False),
    ("wall-1920x1080", 1920, 1080, True),
    ("wall-3840x2160", 3840, 2160, True),
]
CHECKS = (Path(__file__).parent / "layout_checks.js").read_text()
COMPONENTS = ("postgres", "influxdb", "mqtt", "keycloak", "ingest", "evaluator", "dispatcher", "delivery")


@pytest.mark.parametrize(("name", "width", "height", "wall"), SIZES, ids=[s[0] for s in SIZES])
def test_replay_layout(tstack: Stack, browser: Any, down_moment: tuple[float, dict[str, Any]],
                       name: str, width: int, height: int, wall: bool) -> None:
    """The replayed wall at every size: the banner (and on screens with controls the bar) fits, no
    horizontal overflow, no overlapping text, names whole; the wall still fits one screen. On a
    phone the bar folds behind "Time travel" while live."""
    moment, _then = down_moment
    ctx = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = ctx.new_page()
        page.goto(f"{tstack.base}/?at={_iso(moment)}{'&wall=1' if wall else ''}")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"comp-dispatcher\"]')?.dataset.status === 'down'",
            timeout=scaled(15) * 1000)
        page.wait_for_selector('[data-testid="replay-banner"]', timeout=scaled(5) * 1000)
        page.evaluate("document.fonts.ready")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"time-travel-{name}.png"), full_page=not wall)
        r = page.evaluate(CHECKS, list(COMPONENTS))
        assert r["scrollWidth"] <= width, f"{name}: the page is {r['scrollWidth']} px wide: {r['wide']}"
        assert not r["wide"], f"{name}: elements past the right edge: {r['wide']}"
        assert not r["clipped"], f"{name}: component names cut: {r['clipped']}"
        assert not r["overlaps"], f"{name}: overlapping text: {r['overlaps']}"
        banner = page.locator('[data-testid="replay-banner"]').bounding_box()
        assert banner is not None and banner["x"] >= 0 and banner["x"] + banner["width"] <= width
        if wall:
            assert r["scrollHeight"] <= height, f"{name}: wall mode scrolls ({r['scrollHeight']} px > {height})"
            assert not r["cut"], f"{name}: text cut across: {r['cut']}"
            assert page.locator('[data-testid="back-to-live"]').count() == 0  # no controls on a wall
        else:
            assert page.locator('[data-testid="timebar-track"]').is_visible()
            live = page.locator('[data-testid="back-to-live"]').bounding_box()
            assert live is not None and live["x"] + live["width"] <= width
            if width <= 600:
                assert live["height"] >= 44, f"{name}: back to live is {live['height']} px tall"
                page.locator('[data-testid="back-to-live"]').click()
                page.wait_for_selector('[data-testid="replay-banner"]', state="detached",
                                       timeout=scaled(10) * 1000)
                # live on a phone: the bar folds behind its button, which opens it
                assert not page.locator('[data-testid="timebar-track"]').is_visible()
                page.get_by_role("button", name="↺ Time travel").click()
                assert page.locator('[data-testid="timebar-track"]').is_visible()
    finally:
        ctx.close()


@pytest.mark.parametrize(("width", "height", "scheme"), [(390, 844, "light"), (1366, 768, "dark"),
                                                         (1366, 768, "light")])
def test_axe_on_the_replayed_page(tstack: Stack, browser: Any, down_moment: tuple[float, dict[str, Any]],
                                  width: int, height: int, scheme: str) -> None:
    """The time bar and the replay banner pass axe-core like every page (test_a11y.py's rules),
    replaying and live (the bar with its state timeline)."""
    from tests.browser.test_a11y import ACCEPTED_MODERATE, audit

    moment, _then = down_moment
    ctx = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    try:
        page = ctx.new_page()
        problems: list[str] = []
        for query in (f"?at={_iso(moment)}", ""):
            page.goto(f"{tstack.base}/{query}")
            page.wait_for_selector('[data-testid="timebar"]', timeout=scaled(15) * 1000)
            page.wait_for_function("() => document.querySelectorAll('[data-testid^=\"comp-\"]').length > 0",
                                   timeout=scaled(15) * 1000)
            page.wait_for_selector('.tb-track .tl-seg', state="attached", timeout=scaled(10) * 1000)
            for v in audit(page):
                if v["impact"] in ("serious", "critical") or (
                        v["impact"] == "moderate" and v["id"] not in ACCEPTED_MODERATE):
                    problems.append(f"/{query} [{v['impact']}] {v['id']}: {v['help']} {v['nodes']}")
        assert not problems, f"{width}x{height} {scheme}:\n" + "\n".join(problems)
    finally:
        ctx.close()


def test_play_runs_the_recording_forward_then_catches_up_with_live(
        tstack: Stack, browser: Any, down_moment: tuple[float, dict[str, Any]]) -> None:
    """Play at 1x from the down moment: the replay clock in the banner moves on and the dispatcher
    turns healthy at its recorded recovery, still in replay; at 60x the replay reaches the present
    and the page is live by itself (banner gone, `at` gone from the URL)."""
    moment, _then = down_moment
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        page = ctx.new_page()
        console = Console()
        page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{tstack.base}/?at={_iso(moment)}")
        down = "() => document.querySelector('[data-testid=\"comp-dispatcher\"]')?.dataset.status === 'down'"
        page.wait_for_function(down, timeout=scaled(15) * 1000)
        first = page.locator('[data-testid="replay-time"]').inner_text()
        page.get_by_role("button", name="1×").click()
        page.locator('[data-testid="replay-play"]').click()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"replay-state\"]')?.innerText.includes('playing at 1×')",
            timeout=scaled(10) * 1000)
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"comp-dispatcher\"]')?.dataset.status === 'healthy'",
            timeout=scaled(40) * 1000)
        assert page.locator('[data-testid="replay-banner"]').count() == 1, "healthy only after leaving replay"
        assert page.locator('[data-testid="replay-time"]').inner_text() != first
        assert "Live" not in page.locator('[data-testid="connection"]').inner_text()
        page.get_by_role("button", name="60×").click()
        page.wait_for_selector('[data-testid="replay-banner"]', state="detached", timeout=scaled(30) * 1000)
        assert "at" not in urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query), page.url
        page.wait_for_function("() => document.querySelector('[data-testid=\"connection\"]')?.innerText"
                               ".includes('Live')", timeout=scaled(10) * 1000)
        console.check()
    finally:
        ctx.close()


def test_a_moment_before_the_recording_says_so_and_offers_the_oldest(tstack: Stack, browser: Any) -> None:
    """`at` before the first record: the gateway refuses (not_recorded, with the oldest time); the page
    shows no view (never the live one), says so in the banner, and "Show the oldest" opens that."""
    try:
        with urllib.request.urlopen(f"{tstack.base}/operator/system/view?at={time.time() - 86400:.3f}", timeout=5):
            raise AssertionError("view?at= a day ago answered 200 on a stack started minutes ago")
    except urllib.error.HTTPError as exc:
        status, body = exc.code, json.loads(exc.read())
    assert status == 404 and body["error"] == "not_recorded" and body["oldest"], (status, body)
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        page = ctx.new_page()
        page.goto(f"{tstack.base}/?at=-1d")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"replay-state\"]')?.innerText.includes('nothing recorded')",
            timeout=scaled(15) * 1000)
        assert page.locator('[data-testid="comp-dispatcher"]').get_attribute("data-status") == "unknown"
        assert "Live" not in page.locator('[data-testid="connection"]').inner_text()
        page.locator('[data-testid="replay-oldest"]').click()
        # the oldest view (taken at the aggregator's start: the fleet may not be in it yet)
        oldest = _view_at(tstack, math.ceil(body["oldest"] * 1000) / 1000)
        page.wait_for_selector(f'[data-testid="app"][data-seq="{oldest["meta"]["seq"]}"]', timeout=scaled(15) * 1000)
        assert "paused" in page.locator('[data-testid="replay-state"]').inner_text()
        for name, comp in oldest["health"]["components"].items():
            el = page.locator(f'[data-testid="comp-{name}"]')
            if el.count():
                assert el.first.get_attribute("data-status") == comp["status"], name
        at = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)["at"][0]
        shown = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
        assert 0 <= shown - body["oldest"] < 0.002, (at, body["oldest"])
    finally:
        ctx.close()
