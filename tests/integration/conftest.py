"""Integration fixtures shared across modules (tests/conftest.py has the session ones)."""

from tests.integration.agent_fixtures import agent_fleet, agent_gateway, image_signing_key
from tests.integration.gateway_fixtures import fleet, gateway, gateway_namespace

__all__ = [
    "agent_fleet",
    "agent_gateway",
    "fleet",
    "gateway",
    "gateway_namespace",
    "image_signing_key",
]
