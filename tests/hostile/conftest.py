"""The hostile-input tests use the fault tests' aggregator fixture."""

from tests.faults.conftest import start_aggregator

__all__ = ["start_aggregator"]
