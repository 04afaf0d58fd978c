"""What the simulator and the simulated platform database share: the tenants and the Poisson draw."""

from __future__ import annotations

import math
import random
from typing import Final

__all__ = ["TENANTS", "poisson"]

#: Tenants of the simulated platform (the platform database is seeded with the same names).
TENANTS: Final = (
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "cyberdyne",
    "soylent", "massive", "aperture", "blackmesa", "oscorp", "gringotts", "monarch", "vandelay",
    "dundermifflin", "pied-piper", "prestige", "bluth", "krusty", "duff", "nakatomi", "virtucon",
    "genco", "sterling", "rekall", "weyland", "ollivander", "zorg", "nostromo", "octan", "gekko",
    "lacuna", "cogswell", "spacely", "ingen", "buynlarge", "contoso", "fabrikam", "northwind",
    "tailspin", "adventureworks", "litware", "proseware", "woodgrove",
)


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw with mean ``lam`` (Knuth; the normal approximation above 30)."""
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation: fast and good enough for counts this large
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
