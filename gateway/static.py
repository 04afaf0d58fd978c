"""Serving the built frontend (``frontend/dist``): types, cache headers, gzip, no escape from the root.

    StaticFiles(root).get(path, accept_encoding, if_none_match) -> StaticResult

- ``/`` and any path without a file extension that is not a file (client-side routes) serve
  ``index.html``; a missing file with an extension is 404.
- ``..`` segments, backslashes, NUL bytes and anything resolving outside the root are refused (400).
- Hashed build assets (``name-<hash>.ext``, as Vite writes them under ``assets/``) are
  ``Cache-Control: public, max-age=31536000, immutable``; ``index.html`` and other files are
  ``no-cache`` (revalidated with their ETag).
- With ``Accept-Encoding: gzip`` compressible types are sent gzipped: a precompressed ``file.gz``
  beside the file if present, else compressed once and kept (bounded cache).
"""

from __future__ import annotations

import gzip
import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote

__all__ = ["StaticFiles", "StaticResult"]

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


def _accepts_gzip(accept_encoding: str | None) -> bool:
    for part in (accept_encoding or "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


class StaticFiles:
    """Serve files below ``root``; see the module docstring for the rules."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self._gz: dict[tuple[Path, float, int], bytes] = {}
        self._gz_bytes = 0

    def _error(self, status: int, text: str) -> StaticResult:
        return StaticResult(status, [("Content-Type", "text/plain; charset=utf-8"),
                                     ("Cache-Control", "no-store")], text.encode())

    def get(self, raw_path: str, accept_encoding: str | None = None,
            if_none_match: str | None = None) -> StaticResult:
        path = unquote(raw_path.split("?", 1)[0])
        parts = [p for p in path.split("/") if p]
        if any(p in ("..", ".") or "\\" in p or "\0" in p for p in parts):
            return self._error(400, "bad path: '..' and '.' segments are refused\n")
        if any(p.startswith(".") for p in parts):
            return self._error(404, "not found\n")
        candidate = self.root.joinpath(*parts) if parts else self.root / "index.html"
        if candidate.is_dir():
            candidate = candidate / "index.html"
        if not candidate.is_file():
            if parts and "." in parts[-1]:
                return self._error(404, "not found\n")
            candidate = self.root / "index.html"  # a client-side route: the app decides
            if not candidate.is_file():
                return self._error(404, f"frontend not built: no index.html in {self.root}\n")
        resolved = candidate.resolve()
        if not resolved.is_relative_to(self.root):
            return self._error(400, "bad path: outside the static root\n")
        stat = resolved.stat()
        ctype = _TYPES.get(resolved.suffix.lower()) or (
            mimetypes.guess_type(resolved.name)[0] or "application/octet-stream")
        if resolved.name == "index.html" or not _HASHED.search(resolved.name):
            cache = "no-cache"
        else:
            cache = "public, max-age=31536000, immutable"
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        headers = [("Content-Type", ctype), ("Cache-Control", cache), ("ETag", etag),
                   ("X-Content-Type-Options", "nosniff")]
        compressible = ctype.startswith(_COMPRESSIBLE)
        if compressible:
            headers.append(("Vary", "Accept-Encoding"))
        if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
            return StaticResult(304, headers, b"")
        if compressible and _accepts_gzip(accept_encoding):
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
