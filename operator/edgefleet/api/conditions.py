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
    ABORTED: Final = "Aborted"
    DEVICES_SKIPPED: Final = "DevicesSkipped"


class Reason:
    """Condition reasons."""

    # generic
    RECONCILED: Final = "Reconciled"
    PROGRESSING: Final = "Progressing"
    INVALID_SPEC: Final = "InvalidSpec"
    #: An unexpected error in the controller; retried with backoff.
    INTERNAL_ERROR: Final = "InternalError"
    # InferenceModel build and signing
    BUILDING: Final = "Building"
    BUILD_SUCCEEDED: Final = "BuildSucceeded"
    SOURCE_UNAVAILABLE: Final = "SourceUnavailable"
    SOURCE_DIGEST_MISMATCH: Final = "SourceDigestMismatch"
    UNSUPPORTED_PLATFORM: Final = "UnsupportedPlatform"
    REGISTRY_ERROR: Final = "RegistryError"
    #: The registry refused the operator's credentials (401/403); a retry cannot help.
    REGISTRY_ACCESS_DENIED: Final = "RegistryAccessDenied"
    #: Content read from a registry is malformed (not a valid manifest, index, config).
    INVALID_CONTENT: Final = "InvalidContent"
    #: The runtime layer's wheels could not be fetched.
    RUNTIME_UNAVAILABLE: Final = "RuntimeUnavailable"
    #: The last build is Ready, but checking it against the registry is retrying.
    CHECK_RETRYING: Final = "CheckRetrying"
    #: The registry no longer matches the status (an image or signature is missing).
    DRIFT_DETECTED: Final = "DriftDetected"
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
    MODEL_NOT_FOUND: Final = "ModelNotFound"
    MODEL_NOT_READY: Final = "ModelNotReady"
    VERSION_NOT_FOUND: Final = "VersionNotFound"
    PLATFORM_NOT_BUILT: Final = "PlatformNotBuilt"
    NO_DEVICES: Final = "NoDevices"
    PRIORITY_TIE: Final = "PriorityTie"
    LOST_TO_PRIORITY: Final = "LostToHigherPriority"
    WAVE_STARTED: Final = "WaveStarted"
    STEP_COMPLETED: Final = "StepCompleted"
    WAITING_FOR_HEALTH: Final = "WaitingForHealth"
    WAITING_FOR_PROMOTION: Final = "WaitingForPromotion"
    WAITING_FOR_PAUSE: Final = "WaitingForPause"
    WAITING_FOR_DEVICES: Final = "WaitingForDevices"
    PROMOTED: Final = "Promoted"
    ROLLED_BACK: Final = "RolledBack"
    RETRIED: Final = "Retried"
    DEVICE_FAILED: Final = "DeviceFailed"
    LATENCY_ABOVE_LIMIT: Final = "LatencyAboveLimit"
    SUSPENDED_DEVICE: Final = "DeviceSuspended"
