"""File-system helpers shared by the disk and InfluxDB probes (blocking: run them in a thread).

``scan`` sizes a tree the way ``du`` does (allocated blocks, each hard-linked inode once, symlinks not
followed, other file systems included) within a time budget; past it, the size is a lower bound and
``complete`` is False. ``volume`` is what ``df`` shows for the file system holding a path.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Scan", "Volume", "mount_point", "scan", "volume"]


@dataclass(slots=True)
class Scan:
    disk_bytes: int = 0
    files: int = 0
    complete: bool = True
    #: Directories or files that could not be read (permission, vanished meanwhile).
    errors: int = 0


def scan(root: str, deadline: float, visit: Callable[[str, os.stat_result], None] | None = None,
         clock: Callable[[], float] = time.monotonic) -> Scan:
    """Walk ``root`` until ``deadline`` (a ``clock()`` value); ``visit(path, st)`` sees every file."""
    out = Scan()
    seen: set[tuple[int, int]] = set()
    try:
        st = os.lstat(root)
    except OSError:
        out.complete = False
        out.errors += 1
        return out
    out.disk_bytes += st.st_blocks * 512
    stack = [root]
    checked = 0
    while stack:
        path = stack.pop()
        try:
            it = os.scandir(path)
        except OSError:
            out.errors += 1
            out.complete = False
            continue
        with it:
            for entry in it:
                checked += 1
                if checked % 256 == 0 and clock() > deadline:
                    out.complete = False
                    return out
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    out.errors += 1
                    continue
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                out.disk_bytes += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                elif stat.S_ISREG(st.st_mode):
                    out.files += 1
                    if visit is not None:
                        visit(entry.path, st)
        if clock() > deadline and stack:
            out.complete = False
            return out
    return out


def mount_point(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


@dataclass(frozen=True, slots=True)
class Volume:
    mount: str
    device: int
    total_bytes: int
    used_bytes: int
    #: Like ``df``'s Use%: used / (used + available to unprivileged users).
    used_pct: float


def volume(path: str) -> Volume:
    sv = os.statvfs(path)
    total = sv.f_blocks * sv.f_frsize
    used = (sv.f_blocks - sv.f_bfree) * sv.f_frsize
    avail = sv.f_bavail * sv.f_frsize
    pct = used / (used + avail) * 100 if used + avail else 0.0
    return Volume(mount=mount_point(path), device=os.stat(path).st_dev, total_bytes=total,
                  used_bytes=used, used_pct=round(pct, 2))
