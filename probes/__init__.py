"""Active checks of the platform's components, publishing results to ``<root>/v1/probe/<target>``.

One module per target (postgres, platform, mqtt, influxdb, keycloak, docker, disk), the pure state
rules in ``probes.core``, and the runner/publisher in ``probes.runner`` (``opsdash probes``).
See docs/probes.md.
"""
