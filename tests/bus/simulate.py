"""Drive the pure fold with the real pure reporter core: no broker, a clock the test controls."""

from __future__ import annotations

from dataclasses import dataclass, field

from telemetry_bus.config import AggregatorConfig
from telemetry_bus.contract import Metrics, encode, topics
from telemetry_bus.fold import Fold
from telemetry_bus.reporter import ReporterCore

ROOT = "$ops"


@dataclass
class FakeReporter:
    service: str
    instance: str
    boot: str = "boot-1"
    interval_s: float = 1.0
    skew_s: float = 0.0  # the reporter's clock minus the aggregator's
    core: ReporterCore = field(init=False)

    def __post_init__(self) -> None:
        self.core = ReporterCore(self.boot, self.interval_s, 0.0)

    def online(self, fold: Fold, now: float) -> None:
        st = self.core.status("online", now + self.skew_s)
        fold.feed(topics.status(ROOT, self.service, self.instance), encode(st), now)

    def offline(self, fold: Fold, now: float, reason: str) -> None:
        st = self.core.status("offline", now + self.skew_s, reason)
        fold.feed(topics.status(ROOT, self.service, self.instance), encode(st), now)

    def take(self, now: float) -> Metrics:
        return self.core.take(now + self.skew_s)

    def send(self, fold: Fold, msg: Metrics, now: float) -> None:
        fold.feed(topics.metrics(ROOT, self.service, self.instance), encode(msg), now)

    def restart(self, boot: str) -> None:
        self.boot = boot
        self.core = ReporterCore(boot, self.interval_s, 0.0)


def new_fold(now: float = 1000.0, **cfg: object) -> Fold:
    return Fold(AggregatorConfig(**cfg), ROOT, now)  # type: ignore[arg-type]
