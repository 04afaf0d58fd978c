"""A full view from the real fold, wired as the aggregator wires it (graph, alerts), fed the replay
generator's stream: every section and most members populated, counts sent as ints."""

from __future__ import annotations

import base64
from typing import Any

from opsdash.config import load_config
from opsdash.wiring import build_aggregator
from telemetry_bus.fold import TickOutput
from tests.bus.replay import T0, make_stream


def full_ticks(seconds: int = 150) -> list[TickOutput]:
    """Every tick's output of the stream (the last ones have the richest view)."""
    svc = build_aggregator(load_config(env={}), clock=lambda: T0)
    svc.alerts.ready = True  # no retained alert state to wait for: evaluate from the first tick
    fold = svc.fold
    outs: list[TickOutput] = []
    for s in make_stream(seconds):
        if "tick" in s:
            outs.append(fold.tick(s["tick"], full=s["full"]))
        else:
            fold.feed(s["topic"], base64.b64decode(s["payload"]), s["t"], s["retained"])
    return outs


def walk(value: Any, path: str = "$") -> list[tuple[str, Any]]:
    """Every (path, leaf) of a JSON value."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in walk(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in walk(v, f"{path}[{i}]")]
    return [(path, value)]
