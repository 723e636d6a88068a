"""The rollout controller's kopf wiring: the watches that feed its cache, its start-up
(list every kind, start the loop) and its clean-up.

:func:`register` puts them on an explicit ``kopf.OperatorRegistry`` (the composition
root, :mod:`edgefleet.handlers.operator`, calls it through
:mod:`edgefleet.handlers.rollout`, which re-exports it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import kopf
import structlog

from edgefleet.api import GROUP, VERSION
from edgefleet.handlers.rolloutcache import KINDS

if TYPE_CHECKING:
    from edgefleet.handlers.rollout import RolloutController

__all__ = ["register"]

log = structlog.get_logger("edgefleet.rollouts")

_CACHE_ID = "rollout-cache"


def _quiet_cache(record: logging.LogRecord) -> bool:
    """Drop kopf's per-event success lines of the cache handlers (one per device event)."""
    return _CACHE_ID not in record.getMessage() or record.levelno > logging.INFO


def register(registry: kopf.OperatorRegistry, controller: RolloutController) -> None:
    """Register the rollout controller's watches, start-up and clean-up on ``registry``."""
    tasks: list[asyncio.Task[None]] = []

    for plural in KINDS:

        def make(kind: str) -> Callable[..., Any]:
            async def observe(event: kopf.RawEvent, **_: Any) -> None:
                controller.observe(kind, event.get("type"), event["object"])

            return observe

        kopf.on.event(GROUP, VERSION, plural, id=f"{_CACHE_ID}-{plural}", registry=registry)(
            make(plural)
        )
    # kopf logs every handler call; the cache sees every event of the fleet: keep quiet.
    logging.getLogger("kopf.objects").addFilter(_quiet_cache)

    @kopf.on.startup(registry=registry)
    async def start_rollouts(**_: Any) -> None:
        controller.wake = asyncio.Event()
        await asyncio.to_thread(controller.sync)
        tasks.append(asyncio.get_running_loop().create_task(controller.loop()))
        log.info("rollout controller started", rollouts=len(controller.cache.items("rollouts")))

    @kopf.on.cleanup(registry=registry)
    async def stop_rollouts(**_: Any) -> None:
        for task in tasks:
            task.cancel()
        controller.stop()
