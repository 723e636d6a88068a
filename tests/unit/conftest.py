"""Unit-test fixtures shared across modules: the agent's gateway stand-in and an
enrolled state dir (defined in agent_helpers.py)."""

from tests.unit.agent_helpers import gw, state

__all__ = ["gw", "state"]
