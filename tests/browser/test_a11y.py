"""Accessibility audit (issue 18): axe-core, injected from frontend/node_modules, on every page of the
route table at phone and desktop sizes, in the light and the dark theme, and the wall. No violation
of impact serious or critical; moderate ones only when listed below with why (and in
docs/frontend.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import FRONTEND, Stack
from tests.browser.routes import pages
from tests.support.servers import scaled

pytestmark = pytest.mark.browser

AXE = FRONTEND / "node_modules" / "axe-core" / "axe.min.js"

#: rule id -> why a moderate finding is accepted (kept in step with docs/frontend.md)
ACCEPTED_MODERATE: dict[str, str] = {}

SIZES = [("phone", 390, 844, "light"), ("phone", 390, 844, "dark"),
         ("desktop", 1366, 768, "light"), ("desktop", 1366, 768, "dark")]


def audit(page: Any) -> list[dict[str, Any]]:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: cd frontend && npm ci")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
      const r = await axe.run(document, {resultTypes: ['violations']});
      return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ') + ': ' + n.failureSummary.split('\\n').slice(1, 2).join(''))}));
    }""")
    return result  # type: ignore[no-any-return]


@pytest.mark.parametrize(("kind", "width", "height", "scheme"), SIZES,
                         ids=[f"{s[0]}-{s[3]}" for s in SIZES])
def test_axe_on_every_page(stack: Stack, browser: Any, kind: str, width: int, height: int,
                           scheme: str) -> None:
    ctx = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme,
                              bypass_csp=True)  # the gateway's CSP forbids injected scripts
    try:
        page = ctx.new_page()
        problems: list[str] = []
        for path in pages():
            page.goto(stack.base + path)
            page.wait_for_selector('[data-testid="app"][data-phase="live"]', timeout=scaled(15) * 1000)
            page.wait_for_function("() => document.querySelectorAll('[data-testid^=\"comp-\"]').length > 0"
                                   " || location.pathname !== '/'", timeout=scaled(10) * 1000)
            page.wait_for_timeout(300)
            for v in audit(page):
                if v["impact"] in ("serious", "critical") or (
                        v["impact"] == "moderate" and v["id"] not in ACCEPTED_MODERATE):
                    problems.append(f"{path} [{v['impact']}] {v['id']}: {v['help']} {v['nodes']}")
        assert not problems, f"{kind} {width}x{height} {scheme}:\n" + "\n".join(problems)
    finally:
        ctx.close()


def test_axe_on_the_wall(stack: Stack, browser: Any) -> None:
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080}, color_scheme="light",
                              bypass_csp=True)
    try:
        page = ctx.new_page()
        page.goto(stack.base + "/?wall=1")
        page.wait_for_selector('[data-testid="app"][data-phase="live"]', timeout=scaled(15) * 1000)
        page.wait_for_selector('[data-testid="error-row"]', timeout=scaled(10) * 1000)
        # the wall stays dark whatever the system theme says
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
        bad = [v for v in audit(page) if v["impact"] in ("serious", "critical")
               or (v["impact"] == "moderate" and v["id"] not in ACCEPTED_MODERATE)]
        assert not bad, bad
    finally:
        ctx.close()


def test_the_route_table_is_read(stack: Stack) -> None:
    assert {"/", "/history", "/logs", "/graph", "/alerts", "/component/ingest"} <= set(pages())
    assert Path(AXE).exists()


def test_axe_on_a_stale_view(stack: Stack, browser: Any) -> None:
    """Greyed stale pages keep AA contrast: the audit of every page after the gateway goes away."""
    ctx = browser.new_context(viewport={"width": 1366, "height": 768}, color_scheme="dark",
                              bypass_csp=True)
    try:
        page = ctx.new_page()
        bad = []
        for path in pages():
            page.goto(stack.base + path)
            page.wait_for_selector('[data-testid="app"][data-phase="live"]', timeout=scaled(15) * 1000)
            page.wait_for_timeout(800)
            stack.stop("gateway")
            try:
                # the client navigates within the app: the page stays, its data goes stale
                page.wait_for_selector('header.top-stale', timeout=scaled(15) * 1000)
                page.wait_for_timeout(400)
                bad += [f"{path} [{v['impact']}] {v['id']}: {v['nodes']}" for v in audit(page)
                        if v["impact"] in ("serious", "critical")]
            finally:
                stack.start_gateway()
        assert not bad, "\n".join(bad)
    finally:
        ctx.close()
