"""Integration fixtures shared across modules (tests/conftest.py has the session ones)."""

from tests.integration.gateway_fixtures import fleet, gateway, gateway_namespace

__all__ = ["fleet", "gateway", "gateway_namespace"]
