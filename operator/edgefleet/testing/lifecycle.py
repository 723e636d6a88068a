"""The lifecycle every harness part shares: ``with Part(...) as part:``.

Entering starts the part; leaving stops it, whatever happened inside; and a start
that fails half-way stops what it already started before the error goes on, so a
test never leaves processes, directories or cgroups behind. A part implements
``start`` and an idempotent ``stop``.
"""

from __future__ import annotations

from typing import Self

__all__ = ["Harness"]


class Harness:
    """Base of a part a test starts and must stop (control plane, registry, node…)."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
