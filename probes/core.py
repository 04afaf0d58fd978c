"""The pure core of the probes: what a check returns, and how the state rules turn it into a result.

A check (one per target, in the sibling modules) is thin I/O: it gathers raw answers and hands them
to a pure function that returns a :class:`Reading` or raises a :class:`ProbeError`. The runner adds the
timeout, then :func:`judge` applies design.md section 3:

- healthy: the check passed within its latency budget and no limit is near;
- degraded: slower than the budget, near a limit (``Reading.warnings``), or a first failure;
- down: two failures in a row, or a timeout (at once);
- unknown: the target cannot be checked here (:class:`Unavailable`: no Docker socket, not configured).

Exceptions::

    ProbeError            a failed check; ``str()`` is the reason shown to operators
    └── Unavailable       the target cannot be checked from here (status "unknown", not a failure)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from telemetry_bus.contract import ProbeResult

__all__ = [
    "FAILURES_FOR_DOWN",
    "ProbeError",
    "ProbeState",
    "Reading",
    "TimedOut",
    "Unavailable",
    "judge",
    "num",
]

FAILURES_FOR_DOWN: Final = 2
_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MAX_ERROR: Final = 2000
_FIN: Final = 1e15


class ProbeError(Exception):
    """A failed check. The message is the operator-facing reason (no traceback)."""


class Unavailable(ProbeError):
    """The target cannot be checked from here (status ``unknown``); not counted as a failure."""


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The check did not finish within ``timeout_s``."""

    timeout_s: float


@dataclass(frozen=True, slots=True)
class Reading:
    """A passed check: its latency, flat metrics, structured details and near-limit warnings."""

    latency_ms: float | None
    metrics: Mapping[str, float | int | None] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    #: Non-fatal problems (near a limit, a sub-query failed): each makes the result "degraded".
    warnings: tuple[str, ...] = ()


def num(value: object) -> float | int | None:
    """A metric value: finite int/float (bools and strings of numbers accepted), else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) <= 2**53 else float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) and abs(value) <= _FIN else None
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            return None
        if parsed.is_integer() and abs(parsed) <= 2**53:
            return int(parsed)
        return parsed if math.isfinite(parsed) and abs(parsed) <= _FIN else None
    try:  # Decimal and friends: an integral one (a SUM of counts) is a count
        as_float = float(value)  # type: ignore[arg-type]
        if as_float.is_integer() and abs(as_float) <= 2**53 and value == int(as_float):
            return int(as_float)
        return num(as_float)
    except (TypeError, ValueError):
        return None


@dataclass(slots=True)
class ProbeState:
    """What the state rules remember between cycles of one target."""

    failures: int = 0
    last_status: str = "unknown"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


def _clean_metrics(metrics: Mapping[str, object]) -> dict[str, float | int | None]:
    out: dict[str, float | int | None] = {}
    for name, value in metrics.items():
        if not _NAME_RE.match(name):
            raise ValueError(f"metric name {name!r} does not match [a-z][a-z0-9_]{{0,63}}")
        out[name] = num(value)
    return out


def judge(
    outcome: Reading | ProbeError | TimedOut,
    state: ProbeState,
    *,
    now: float,
    period_s: float,
    latency_budget_ms: float,
) -> ProbeResult:
    """Apply the state rules to one outcome; updates ``state`` and returns the result to publish."""
    status: Literal["healthy", "degraded", "down", "unknown"]
    match outcome:
        case Reading(latency_ms=latency, metrics=metrics, details=details, warnings=warnings):
            state.failures = 0
            problems = list(warnings)
            if latency is not None and latency > latency_budget_ms:
                problems.insert(0, f"slow: {latency:.0f} ms > budget {latency_budget_ms:g} ms")
            status = "degraded" if problems else "healthy"
            result = ProbeResult(
                ts=now, status=status,
                latency_ms=None if latency is None else round(max(latency, 0.0), 3),
                metrics=_clean_metrics(metrics), details=dict(details),
                error=_clip("; ".join(problems)) if problems else None, period_s=period_s)
        case Unavailable() as exc:
            state.failures = 0
            status = "unknown"
            result = ProbeResult(ts=now, status=status, error=_clip(f"unavailable: {exc}"),
                                 period_s=period_s)
        case ProbeError() as exc:
            state.failures += 1
            if state.failures >= FAILURES_FOR_DOWN:
                status, reason = "down", str(exc)
            else:
                status = "degraded"
                reason = f"{exc} (failure 1 of {FAILURES_FOR_DOWN}; retrying)"
            result = ProbeResult(ts=now, status=status, error=_clip(reason or type(exc).__name__),
                                 period_s=period_s)
        case TimedOut(timeout_s=timeout_s):
            state.failures += 1
            status = "down"
            result = ProbeResult(ts=now, status=status, latency_ms=round(timeout_s * 1000, 3),
                                 error=f"timeout: no answer within {timeout_s:g} s", period_s=period_s)
    state.last_status = status
    return result
