"""Serving the built frontend (``frontend/dist``): types, cache headers, gzip, no escape from the root.

    StaticFiles(root).get(path, accept_encoding, if_none_match) -> StaticResult

- ``/`` and the frontend's own routes (:data:`FRONTEND_ROUTES`, at any depth under them: the page
  reads the rest of the path) serve ``index.html``; files of the build are served as they are;
  everything else is 404 (JSON, like every other error of the gateway). The build uses absolute
  asset paths (``/assets/...``, vite ``base: "/"``), so a route at any depth loads its assets.
- ``..`` segments, backslashes, NUL bytes and anything resolving outside the root are refused (400).
- Hashed build assets (``name-<hash>.ext``, as Vite writes them under ``assets/``) are
  ``Cache-Control: public, max-age=31536000, immutable``; ``index.html`` and other files are
  ``no-cache`` (revalidated with their ETag).
- With ``Accept-Encoding: gzip`` compressible types are sent gzipped: a precompressed ``file.gz``
  beside the file if present, else compressed once and kept (bounded cache).
"""

from __future__ import annotations

import gzip
import json
import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote

from gateway.httpserver import accepts_gzip, none_match

__all__ = ["FRONTEND_ROUTES", "StaticFiles", "StaticResult", "is_frontend_route"]

#: Path-based routes of the frontend (frontend/src/app/routes.ts): ``/`` and these, with anything
#: below them. ``/component`` needs a name below it.
FRONTEND_ROUTES: Final = ("/history", "/logs", "/graph", "/alerts", "/component/")

_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
}
_COMPRESSIBLE: Final = ("text/", "application/json", "image/svg+xml", "application/manifest+json",
                        "application/wasm")
_HASHED: Final = re.compile(r"[.-][A-Za-z0-9_-]{8,}\.[a-z0-9]+$")
_GZIP_CACHE_BYTES: Final = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StaticResult:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def is_frontend_route(path: str) -> bool:
    """True for ``/`` and the frontend's routes at any depth (``/history``, ``/component/x/y``)."""
    if path == "/":
        return True
    for route in FRONTEND_ROUTES:
        if route.endswith("/"):
            if path.startswith(route) and len(path) > len(route):
                return True
        elif path == route or path.startswith(route + "/"):
            return True
    return False


class StaticFiles:
    """Serve files below ``root``; see the module docstring for the rules."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self._gz: dict[tuple[Path, float, int], bytes] = {}
        self._gz_bytes = 0

    def _error(self, status: int, code: str, text: str) -> StaticResult:
        body = json.dumps({"error": code, "message": text}).encode()
        return StaticResult(status, [("Content-Type", "application/json"),
                                     ("Cache-Control", "no-store")], body)

    def get(self, raw_path: str, accept_encoding: str | None = None,
            if_none_match: str | None = None) -> StaticResult:
        path = unquote(raw_path.split("?", 1)[0])
        parts = [p for p in path.split("/") if p]
        if any(p in ("..", ".") or "\\" in p or "\0" in p for p in parts):
            return self._error(400, "bad_request", "bad path: '..' and '.' segments are refused")
        if any(p.startswith(".") for p in parts):
            return self._error(404, "not_found", f"no file {path[:200]!r}")
        if is_frontend_route(path):
            candidate = self.root / "index.html"  # the app reads the path
            if not candidate.is_file():
                return self._error(404, "not_found", f"frontend not built: no index.html in {self.root}")
        else:
            candidate = self.root.joinpath(*parts)
            if not candidate.is_file():
                return self._error(404, "not_found", f"no page or file {path[:200]!r}")
        resolved = candidate.resolve()
        if not resolved.is_relative_to(self.root):
            return self._error(400, "bad_request", "bad path: outside the static root")
        stat = resolved.stat()
        ctype = _TYPES.get(resolved.suffix.lower()) or (
            mimetypes.guess_type(resolved.name)[0] or "application/octet-stream")
        if resolved.name == "index.html" or not _HASHED.search(resolved.name):
            cache = "no-cache"
        else:
            cache = "public, max-age=31536000, immutable"
        compressible = ctype.startswith(_COMPRESSIBLE)
        gz = compressible and accepts_gzip(accept_encoding)
        # one validator per representation (RFC 9110 8.8.3): the gzipped bytes have their own
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}{"-gz" if gz else ""}"'
        headers = [("Content-Type", ctype), ("Cache-Control", cache), ("ETag", etag)]
        if compressible:
            headers.append(("Vary", "Accept-Encoding"))
        if none_match(if_none_match, etag):
            return StaticResult(304, [h for h in headers if h[0] != "Content-Type"], b"")
        if gz:
            body = self._gzipped(resolved, stat.st_mtime, stat.st_size)
            headers.append(("Content-Encoding", "gzip"))
            return StaticResult(200, headers, body)
        return StaticResult(200, headers, resolved.read_bytes())

    def _gzipped(self, path: Path, mtime: float, size: int) -> bytes:
        key = (path, mtime, size)
        cached = self._gz.get(key)
        if cached is not None:
            return cached
        pre = path.with_name(path.name + ".gz")
        if pre.is_file() and pre.stat().st_mtime >= mtime:
            body = pre.read_bytes()
        else:
            body = gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)
        if self._gz_bytes + len(body) > _GZIP_CACHE_BYTES:
            self._gz.clear()
            self._gz_bytes = 0
        self._gz[key] = body
        self._gz_bytes += len(body)
        return body
