"""An Event a rollout pass asks the controller to post (``Normal`` or ``Warning``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Event"]


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str
