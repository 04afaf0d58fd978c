"""Small asyncio helpers shared by the I/O adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], patience: float = 0.1) -> None:
    """Cancel ``tasks`` and wait until they are done.

    Cancels again while any is still running: on Python 3.11 ``asyncio.wait_for`` can swallow a
    cancellation that arrives as its inner future completes (fixed in 3.12), and aiomqtt's
    ``publish`` waits through it, so one ``cancel()`` is not always enough.
    """
    pending = [t for t in tasks if not t.done()]
    while pending:
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=patience)
        pending = [t for t in pending if not t.done()]
