"""Health states and the hysteresis that keeps a flapping subject from flickering the wall.

design.md section 3: a Last Will, a failed connection or silence turns a subject down at once; any
other change must hold for ``n`` consecutive evaluations before it shows. Pure: time is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["RANK", "Hysteresis", "State", "worst"]

State = Literal["healthy", "degraded", "down", "unknown"]

#: Order of badness for "the overall status is the worst component". Unknown ranks between degraded
#: and down: a component we cannot see is worse than a slow one, better than a dead one.
RANK: Final[dict[str, int]] = {"healthy": 0, "degraded": 1, "unknown": 2, "down": 3}


def worst(states: Iterable[str]) -> State:
    found: list[State] = [s for s in states if s in RANK]  # type: ignore[misc]
    if not found:
        return "unknown"
    return max(found, key=RANK.__getitem__)


@dataclass(slots=True)
class Hysteresis:
    """The shown state of one subject, and the candidate that has to hold before it replaces it."""

    state: State = "unknown"
    reason: str | None = "never seen"
    since: float | None = None
    candidate: State | None = None
    count: int = 0

    def update(self, raw: State, reason: str | None, now: float, hold: int, immediate: bool) -> bool:
        """Feed one evaluation; return True when the shown state changed."""
        if raw == self.state:
            self.reason = reason
            self.candidate, self.count = None, 0
            return False
        if raw != self.candidate:
            self.candidate, self.count = raw, 0
        self.count += 1
        if immediate or self.state == "unknown" or self.count >= hold:
            self.state, self.reason, self.since = raw, reason, now
            self.candidate, self.count = None, 0
            return True
        return False
