"""Trusted time: the device clock, corrected by the gateway's when they disagree.

Devices boot without a real-time clock, or keep a wrong one for months. Documents
carry ``expiresAt`` and certificates have lifetimes, so the agent needs a time it can
trust. The rule (``docs/agent.md``, "Clock"):

- the ``Date`` header of every response from the gateway, over TLS verified against the
  pinned CA with the device's own certificate, is a signal of the real time;
- when it differs from the device clock by more than :data:`SKEW_TOLERANCE`, the agent
  uses ``device clock + offset`` for every expiry and renewal decision (and reports the
  skew as a condition message); within the tolerance the device clock is used as is;
- the offset is persisted, so a restart while offline keeps the corrected time.

A gateway can therefore move a device's notion of time, but only a gateway that holds
a pinned CA's key; and because documents must also carry a version at least as new as
the held one, it cannot replay an old document by lying about the time.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from typing import Literal

__all__ = ["SKEW_TOLERANCE", "Clock"]

SKEW_TOLERANCE = 300.0  # seconds


class Clock:
    def __init__(self, wall: Callable[[], float] = time.time, offset: float = 0.0) -> None:
        self._wall = wall
        self._offset = offset
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        """Seconds to add to the device clock (0 while it agrees with the gateway)."""
        return self._offset

    def observe(self, gateway_time: float) -> None:
        """A ``Date`` from an authenticated gateway response (whole seconds)."""
        skew = gateway_time - self._wall()
        with self._lock:
            if abs(skew) > SKEW_TOLERANCE:
                self._offset = skew
            elif abs(self._offset) > 0.0:
                self._offset = 0.0

    def device(self) -> float:
        return self._wall()

    def time(self) -> float:
        return self._wall() + self._offset

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.time(), datetime.UTC)

    def skew_condition(self) -> tuple[Literal["True", "False"], str, str]:
        """The ``ClockSkew`` condition's status, reason and message."""
        skew = self._offset
        if abs(skew) > SKEW_TOLERANCE:
            message = f"the device clock is {skew:+.0f}s off the gateway's; using gateway time"
            return "True", "DeviceClockWrong", message
        return "False", "InSync", ""
