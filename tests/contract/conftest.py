"""The gateway fixture of tests/gateway, for the contract tests."""

from tests.gateway.conftest import make_gateway

__all__ = ["make_gateway"]
