"""Cardinality attack: 100,000 distinct instance ids and 100,000 distinct metric names (and 1,000
services) from one client, through a real mosquitto into a real AggregatorService (default caps: 64
services, 256 instances per service, 256 series per instance).

The attacker is a separate process (tests/hostile/flood_proc.py, paho, QoS 0). A first, smaller flood
(10,000 of each) fills the caps; the fold's deep size (every object reachable from the Fold, by gc
referents) is measured after it and again after the full flood of 100,000 new names: ten times the
distinct names must not grow the fold. Series and instances stay under the caps; the excess is
quarantined and counted (meta.quarantined, quarantine reasons, errors.counts.quarantined_1h). The topic
cache (parsed topic strings, cleared at 65,536 entries) is the one structure that follows the number of
distinct topics; it is measured and reported apart.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
import types
from typing import Any

from tests.conftest import eventually
from tests.faults.conftest import StartAggregator
from tests.support.servers import ROOT, Mosquitto, scaled

N = 100_000
_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def deep_size(root: Any, exclude: tuple[Any, ...] = ()) -> int:
    seen = {id(x) for x in exclude}
    stack, size = [root], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        size += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return size


async def all_folded(fold: Any, sent: int, what: str, stall_s: float = 20.0) -> None:
    """Wait until every message sent is folded or quarantined: as long as the count still grows (a loaded
    machine folds 100,000 messages slowly), failing once it has not moved for ``stall_s`` (scaled)."""
    loop = asyncio.get_running_loop()
    last, moved = -1, loop.time()
    while (done := fold.folded + fold.quarantined) != sent:
        if done != last:
            last, moved = done, loop.time()
        elif loop.time() - moved > scaled(stall_s):
            raise AssertionError(f"{what}: {done:,} of {sent:,} folded or quarantined, "
                                 f"none more for {stall_s:g} s")
        await asyncio.sleep(0.05)


async def in_the_view(agg: Any) -> None:
    """Every message so far counted in a view, and two ticks since: the fold's current and previous
    views (part of its size) both show the flood, at the first measurement as at the second. On a
    loaded machine the tick comes late; measured before it, the first size was smaller."""
    fold = agg.fold
    await eventually(lambda: agg.last is not None and agg.last.view["meta"]["quarantined"] == fold.quarantined,
                     20, what="counted in the view")
    seq = agg.last.seq
    await eventually(lambda: agg.last.seq >= seq + 2, 20, what="two more ticks")


def flood(broker: Mosquitto, n: int, t: float, prefix: str) -> int:
    out = subprocess.run([sys.executable, "-m", "tests.hostile.flood_proc", broker.host, str(broker.port),
                          str(n), str(t), prefix], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=120)
    return int(out.stdout.strip())


async def test_cardinality_attack_stays_under_the_caps(mosquitto: Mosquitto,
                                                       start_aggregator: StartAggregator) -> None:
    # names per service capped at 256 (the attack's 256 instances send one name each; "wide" sends 200
    # per instance), so the first flood already fills every cap: what the second adds is then only
    # what more names could add
    agg, _ = await start_aggregator("card-agg", OPSDASH_AGGREGATOR__MAX_SERIES_PER_SERVICE="256")
    fold, cfg = agg.fold, agg.fold.cfg
    t = time.time()
    sent1 = await asyncio.to_thread(flood, mosquitto, N // 10, t, "a")
    await all_folded(fold, sent1, "first flood")
    await in_the_view(agg)
    warm = deep_size(fold, (fold._topics, fold.cfg))
    sent2 = await asyncio.to_thread(flood, mosquitto, N, t, "b")
    sent = sent1 + sent2
    await all_folded(fold, sent, "both floods")
    await in_the_view(agg)
    after = deep_size(fold, (fold._topics, fold.cfg))
    topic_cache = deep_size(fold._topics)
    assert len(fold.services) == cfg.max_services
    assert len(fold.services["attack"].instances) == cfg.max_instances_per_service
    for svc in fold.services.values():
        assert len(svc.instances) <= cfg.max_instances_per_service
        for inst in svc.instances.values():
            assert len(inst.series) <= cfg.max_series_per_instance
    # the first message of each wide instance (200 names) is folded; the next would pass 256: refused
    # the second flood's wide instance brings 200 new names to a service at its cap: refused whole
    assert sorted(len(i.series) for i in fold.services["wide"].instances.values()) == [0, 200]
    assert len(fold.services["wide"].series) == 200
    new_services = cfg.max_services - len(cfg.expected_services) - 2  # besides "attack" and "wide"
    folded = cfg.max_instances_per_service + 1 + new_services  # the second wide instance: refused
    assert fold.folded == folded
    assert fold.quarantined == sent - folded
    reasons = fold.quarantine_reasons
    for why in ("too many instances", "too many series", "too many services"):
        assert any(r.startswith(why) for r in reasons), reasons
    assert agg.last is not None
    view = agg.last.view
    assert view["errors"]["counts"]["quarantined_1h"] == fold.quarantined
    assert len(view["errors"]["errors"]) <= 50
    assert len(view["services"]) == cfg.max_services
    # bounded: ten times more distinct names than the first flood, and the fold does not grow with them
    assert after < warm * 1.25, (warm, after)
    assert len(fold._topics) <= 65536
    print(f"\ncardinality attack: {sent:,} messages ({N // 10 + N:,} instance ids, {N // 10 + N:,} metric "
          f"names, 2,000 services) -> services {len(fold.services)} (cap {cfg.max_services}), attack "
          f"instances {len(fold.services['attack'].instances)} (cap {cfg.max_instances_per_service}), max "
          f"series per instance {max(len(i.series) for s in fold.services.values() for i in s.instances.values())}"
          f" (cap {cfg.max_series_per_instance}); folded {fold.folded}, quarantined {fold.quarantined:,}; "
          f"fold size after the 10k flood {warm / 2**20:.2f} MiB, after the 100k flood {after / 2**20:.2f} MiB; "
          f"topic cache {len(fold._topics):,} entries, {topic_cache / 2**20:.1f} MiB (cleared at 65,536)")
