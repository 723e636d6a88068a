"""The ``kubectl edgefleet`` plugin (console script ``kubectl-edgefleet``)."""

from __future__ import annotations

__all__: list[str] = []
