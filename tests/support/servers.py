"""Real servers for the tests: a thin re-export of :mod:`opsdash.servers` (the demo uses them too)."""

from opsdash.servers import (
    DEPLOY_CONF,
    FACTOR,
    ROOT,
    Mosquitto,
    PrivatePostgres,
    free_port,
    local_postgres_up,
    scaled,
    wait_port,
)

__all__ = ["DEPLOY_CONF", "FACTOR", "ROOT", "Mosquitto", "PrivatePostgres", "free_port",
           "local_postgres_up", "scaled", "wait_port"]
