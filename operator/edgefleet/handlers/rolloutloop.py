"""When the rollout controller's passes run: the loop and its pacing.

A single loop runs a pass over every Rollout when something changed (a watch event, a
device write's answer) and at least once every :data:`TICK` for the time-based gates;
after each pass it rests in proportion to the pass's CPU time (:data:`GAP`,
:data:`REST`). :class:`PassLoop` is the part of
:class:`~edgefleet.handlers.rollout.RolloutController` that does this; what a pass does
is the controller's :meth:`~edgefleet.handlers.rollout.RolloutController.run_pass`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

__all__ = ["GAP", "REST", "TICK", "PassLoop"]

log = structlog.get_logger("edgefleet.rollouts")

#: The longest a time-based gate waits past its moment.
TICK = 1.0
#: The least time between two passes, so a stream of watch events and write answers
#: makes a few passes (and Rollout status writes) a second, not one per event.
GAP = 0.1
#: After a pass the loop rests this many times the pass's own CPU time (at least
#: :data:`GAP`, at most :data:`TICK`): passes over a large fleet take at most a fifth
#: of a core, the rest goes to the writers and the watch, and the queue of writes
#: (:data:`IN_FLIGHT`, several seconds of the API server's work) never runs dry. CPU
#: time, not wall time: a pass waiting for the GIL or for its status write is not work.
REST = 4.0


class PassLoop:
    """The loop that schedules a controller's passes (a mixin: the controller supplies
    :meth:`run_pass`, and sets :attr:`wake` and :attr:`_loop` up in its constructor)."""

    wake: asyncio.Event
    _loop: asyncio.AbstractEventLoop | None

    def run_pass(self) -> None:
        raise NotImplementedError

    def _poke(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                loop.call_soon_threadsafe(self.wake.set)

    async def loop(self) -> None:
        """Pass over every Rollout on a change (writes answered included), at most one
        per :data:`GAP` and at least one every :data:`TICK` seconds."""
        self._loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=TICK)
            self.wake.clear()
            spent = 0.0
            try:
                spent = await asyncio.to_thread(self._timed_pass)
            except Exception:  # keep the loop alive; the next pass retries
                log.exception("rollout loop pass failed")
            await asyncio.sleep(min(TICK, max(GAP, REST * spent)))

    def _timed_pass(self) -> float:
        """:meth:`run_pass`; the CPU seconds it took."""
        began = time.thread_time()
        self.run_pass()
        return time.thread_time() - began
