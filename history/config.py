"""Configuration of history (``[history]``) and of the recorder (``[recorder]``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["HistoryConfig", "RecorderConfig"]


class HistoryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: PostgreSQL DSN of opsdash's own history database (``OPSDASH_HISTORY_URL``). Empty: history off.
    url: str = ""
    #: Days kept (1 min and 15 min rollups, states, events, probes, alerts); whole partitions dropped.
    retention_days: Annotated[int, msgspec.Meta(ge=1, le=3660)] = 7
    #: Hours of 1 s points kept (at least 24; rollups cover the rest of the retention).
    raw_hours: Annotated[int, msgspec.Meta(ge=24, le=24 * 3660)] = 48
    #: Connections of the reading pool (gateway) and of the recorder's writer pool.
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class RecorderConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Messages held while the database is slow or away (in order; the oldest are dropped and counted
    #: beyond this). Every kind counts, the view stream's snapshots and patches too (one buffer): one
    #: second of the platform is its record (~8 KB at 200 series), a view patch (~1 KB, compressed at
    #: arrival) and a tenth of a snapshot, plus its events and probe results: 7,200 ~ 55 min without
    #: events, ~30 min at one event a second and four probes every 5 s; ~30 MB.
    buffer: Annotated[int, msgspec.Meta(ge=10, le=10_000_000)] = 7_200
    #: Most messages written in one transaction (a backlog is written in such batches).
    batch: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 2_000
    #: MQTT client id suffix and bus instance name of this recorder.
    id: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")] = "rec-1"
    #: Seconds between retention / partition maintenance runs.
    maintenance_s: Annotated[float, msgspec.Meta(ge=1, le=86400)] = 600.0
