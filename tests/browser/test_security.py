"""The page under the gateway's Content-Security-Policy (issue 17): every page of the route table
runs live with it, and Chromium reports no violation. A deliberately inline script is refused and
reported, so the check can fail."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import Stack
from tests.browser.routes import pages
from tests.support.servers import scaled

_WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


def test_every_page_runs_under_the_csp_without_a_violation(browser: Any, stack: Stack) -> None:
    ctx = browser.new_context(viewport={"width": 1366, "height": 900}, bypass_csp=False)
    try:
        ctx.add_init_script(_WATCH)
        page = ctx.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        for path in [*pages("postgres"), "/component/postgres/instances"]:
            resp = page.goto(stack.base + path)
            assert resp is not None and resp.status == 200, path
            csp = resp.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert resp.headers["x-frame-options"] == "DENY"
            page.wait_for_selector('[data-testid="app"][data-phase="live"]', timeout=scaled(15) * 1000)
            page.wait_for_timeout(300)  # let late work (charts, fonts) run under the policy
            assert page.evaluate("window.__csp") == [], path
        assert not [c for c in console if "Content Security Policy" in c], console
        # the control: an inline script is what the policy forbids, and the watcher sees it
        page.evaluate("""() => { const s = document.createElement("script");
                                 s.textContent = "window.__inline = 1"; document.body.append(s); }""")
        page.wait_for_function("window.__csp.length > 0", timeout=5000)
        assert page.evaluate("window.__inline") is None
        assert "script-src" in page.evaluate("window.__csp")[0]
    finally:
        ctx.close()
