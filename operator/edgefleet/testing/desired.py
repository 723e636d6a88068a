"""Write an EdgeDevice's ``status.desired`` as the rollout controller does, for tests
and benchmarks that stand in for it.

:func:`apply_desired` is one server-side apply of the status subresource under the
controller's own field manager (:data:`edgefleet.domain.rollout.writes.FIELD_MANAGER`),
so the fields other managers own (the gateway's ``status.current``, conditions) stay
theirs, and the gateway sees exactly what a real assignment looks like.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from edgefleet.domain.rollout.writes import FIELD_MANAGER
from edgefleet.testing.controlplane import ControlPlane

__all__ = ["apply_desired"]


def apply_desired(
    cp: ControlPlane,
    namespace: str,
    device: str,
    revision: int,
    workloads: Sequence[Mapping[str, Any]],
) -> None:
    """Set ``status.desired`` (the ``workloads``) and ``status.desiredRevision`` of
    the EdgeDevice ``namespace/device``; kubectl's error is raised if the apply fails."""
    body = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": device, "namespace": namespace},
        "status": {"desiredRevision": revision, "desired": [dict(w) for w in workloads]},
    }
    cp.kubectl(
        "apply",
        "--server-side",
        "--subresource=status",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        input_text=json.dumps(body),
    )
