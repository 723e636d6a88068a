"""kstatus, as Flux computes it for a custom resource, ported for tests.

A port of the generic rules of ``sigs.k8s.io/cli-utils/pkg/kstatus/status``
(``checkGenericProperties`` and ``checkGeneration``), which Flux's kustomize-controller
uses for ``wait: true`` and health checks of kinds it does not know: being deleted →
Terminating; ``status.observedGeneration`` present and different from
``metadata.generation`` → InProgress; then the conditions in order, the first
``Reconciling=True`` → InProgress, the first ``Stalled=True`` → Failed; otherwise
Current.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["compute"]


def compute(obj: Mapping[str, Any]) -> tuple[str, str]:
    """``(status, message)`` with status InProgress, Failed, Current or Terminating."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating", "resource scheduled for deletion"
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if observed is not None and generation is not None and observed != generation:
        return "InProgress", f"generation {generation}, observed {observed}"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Reconciling" and cond.get("status") == "True":
            return "InProgress", str(cond.get("message", ""))
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return "Failed", str(cond.get("message", ""))
    return "Current", "resource is current"
