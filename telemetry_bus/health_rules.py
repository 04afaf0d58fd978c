"""The health rules of design.md section 3 as pure functions of the folded state and ``now``.

Each returns the *raw* state of one subject; the fold feeds it through the subject's hysteresis
(``telemetry_bus.health.Hysteresis``) and notes the changes in the error feed.
"""

from __future__ import annotations

import math

from telemetry_bus.config import AggregatorConfig
from telemetry_bus.health import State
from telemetry_bus.state import RATE_LAG_S, Instance, Probe, Service, iso

__all__ = ["error_ratio_reason", "instance_health", "probe_state", "service_state"]


def instance_health(inst: Instance, now: float, cfg: AggregatorConfig) -> tuple[State, str | None, bool]:
    """(raw state, reason, immediate) of one instance."""
    interval = inst.interval_s
    if not inst.online and inst.offline_reason:
        gone = inst.offline_reason
        why = {"lost": "lost (Last Will)", "shutdown": "shutdown"}.get(gone, gone)
        return "down", why, True
    last = inst.last_seen
    if last is None:
        waited = now - (inst.status_at or inst.first_seen)
        if waited > 3 * interval:
            came = iso(inst.status_at or inst.first_seen)
            return "down", f"no metrics since it came online at {came}", True
        return "unknown", "waiting for the first metrics", True
    age = now - last
    if age > 3 * interval:
        return "down", f"silent since {iso(last)}", True
    if inst.health == "down":
        return "down", f"reports down: {inst.detail}" if inst.detail else "reports down", False
    if inst.health == "degraded":
        why = f"reports degraded: {inst.detail}" if inst.detail else "reports degraded"
        return "degraded", why, False
    if age > 2 * interval:
        return "degraded", f"late: no metrics since {iso(last)}", False
    for gauge, limit in cfg.thresholds.gauges.items():
        value = inst.gauges.get(gauge)
        if value is not None and value > limit:
            return "degraded", f"{gauge} {value:g} > {limit:g}", False
    reason = error_ratio_reason(inst, now, cfg)
    if reason:
        return "degraded", reason, False
    return "healthy", None, False


def error_ratio_reason(inst: Instance, now: float, cfg: AggregatorConfig) -> str | None:
    """Why the instance's failed/(failed + ok) ratio over the window is too high; None when it is not."""
    last = math.floor(now) - RATE_LAG_S
    first = last - cfg.window_s + 1
    limit = cfg.thresholds.error_ratio
    for failed, ok in cfg.thresholds.error_pairs.items():
        f = inst.pair_sum(failed, first, last)
        o = inst.pair_sum(ok, first, last)
        if f + o >= 10 and f / (f + o) > limit:
            return f"{failed} ratio {f / (f + o):.0%} > {limit:.0%}"
    return None


def service_state(svc: Service) -> tuple[State, str | None]:
    """A service from its instances' (already hysteresis-filtered) states."""
    insts = list(svc.instances.values())
    if not insts:
        return "unknown", "no instance seen"
    # An instance stopped cleanly left on purpose: it does not degrade its service while others run.
    counted = [i for i in insts if not (i.state.state == "down" and i.offline_reason == "shutdown")]
    if not counted:
        return "down", "all instances stopped"
    states = [i.state.state for i in counted]
    if all(s == "healthy" for s in states):
        return "healthy", None
    if all(s == "unknown" for s in states):
        return "unknown", "waiting for the first metrics"
    if not any(s in ("healthy", "degraded") for s in states) and any(s == "down" for s in states):
        bad = [i for i in counted if i.state.state == "down"]
        return "down", "; ".join(f"{i.name}: {i.state.reason}" for i in bad[:3])
    bad = [i for i in counted if i.state.state != "healthy"]
    return "degraded", "; ".join(f"{i.name}: {i.state.state}"
                                 + (f" ({i.state.reason})" if i.state.reason else "") for i in bad[:3])


def probe_state(probe: Probe, now: float) -> tuple[State, str | None]:
    """A probe target: what its last result says, or unknown once it is older than three periods."""
    res = probe.result
    age = now - probe.received_at
    if age > 3 * res.period_s:
        return "unknown", f"stale: last result at {iso(probe.received_at)} (period {res.period_s:g} s)"
    return res.status, res.error or None
