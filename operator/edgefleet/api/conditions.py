"""Condition types and reasons, the vocabulary of every edgefleet status.

Types follow kstatus so Flux and Argo CD can judge health: ``Ready`` is the summary,
``Reconciling`` is true while a controller works towards the spec, ``Stalled`` is true
when it cannot progress without a change from a human. Kind-specific types add detail.
Reasons are CamelCase constants; messages carry the variable parts.
"""

from __future__ import annotations

from typing import Final

__all__ = ["Reason", "Type"]


class Type:
    """Condition types."""

    # kstatus, on every kind
    READY: Final = "Ready"
    RECONCILING: Final = "Reconciling"
    STALLED: Final = "Stalled"
    # InferenceModel
    BUILT: Final = "Built"
    SIGNED: Final = "Signed"
    # EdgeDevice
    ENROLLED: Final = "Enrolled"
    ONLINE: Final = "Online"
    UPDATE_FAILED: Final = "UpdateFailed"
    # Rollout
    PROGRESSING: Final = "Progressing"
    HEALTHY: Final = "Healthy"


class Reason:
    """Condition reasons."""

    # generic
    RECONCILED: Final = "Reconciled"
    PROGRESSING: Final = "Progressing"
    INVALID_SPEC: Final = "InvalidSpec"
    # InferenceModel build and signing
    BUILDING: Final = "Building"
    BUILD_SUCCEEDED: Final = "BuildSucceeded"
    SOURCE_UNAVAILABLE: Final = "SourceUnavailable"
    SOURCE_DIGEST_MISMATCH: Final = "SourceDigestMismatch"
    UNSUPPORTED_PLATFORM: Final = "UnsupportedPlatform"
    REGISTRY_ERROR: Final = "RegistryError"
    BUILD_FAILED: Final = "BuildFailed"
    SIGNED: Final = "Signed"
    SIGNING_FAILED: Final = "SigningFailed"
    # EdgeDevice
    AWAITING_ENROLLMENT: Final = "AwaitingEnrollment"
    SUSPENDED: Final = "Suspended"
    HEARTBEAT_MISSED: Final = "HeartbeatMissed"
    # Rollout
    PAUSED: Final = "Paused"
    ABORTED: Final = "Aborted"
    FAILURE_THRESHOLD_EXCEEDED: Final = "FailureThresholdExceeded"
    PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
    COMPLETED: Final = "Completed"
