"""Integration fixtures shared across modules (tests/conftest.py has the session ones)."""

from tests.integration.agent_fixtures import (
    agent_fleet,
    agent_gateway,
    engine,
    image_signing_key,
    model_builder,
)
from tests.integration.gateway_fixtures import fleet, gateway, gateway_namespace
from tests.integration.pki_fixtures import core, gateway_ns

__all__ = [
    "agent_fleet",
    "agent_gateway",
    "core",
    "engine",
    "fleet",
    "gateway",
    "gateway_namespace",
    "gateway_ns",
    "image_signing_key",
    "model_builder",
]
