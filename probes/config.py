"""Configuration of the probes (design.md section 6)."""

from __future__ import annotations

import msgspec

__all__ = ["ProbesConfig"]


class ProbesConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: The platform's PostgreSQL (``OPSDASH_DATABASE_URL``); used by the postgres and platform probes.
    database_url: str = ""
