"""The paths of the frontend's route table (frontend/src/app/routes.ts), read at test time so that
the layout and accessibility tests cover whatever pages exist."""

from __future__ import annotations

import re

from tests.browser.conftest import FRONTEND

ROUTES = FRONTEND / "src" / "app" / "routes.ts"


def pages(component: str = "ingest") -> list[str]:
    """Every path of the route table, ``:params`` filled with a component name."""
    paths = re.findall(r'path:\s*"(/[^"]*)"', ROUTES.read_text())
    assert "/" in paths and len(paths) >= 6, f"route table not understood: {paths}"
    return [re.sub(r":[a-z_]+", component, p).removesuffix("/*") or "/" for p in paths]
