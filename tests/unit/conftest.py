"""Unit-test fixtures shared across modules: the agent's gateway stand-in and an
enrolled state dir (defined in agent_helpers.py), and the inference server's tiny
model (defined in serving_helpers.py)."""

from tests.unit.agent_helpers import gw, state
from tests.unit.serving_helpers import tiny

__all__ = ["gw", "state", "tiny"]
