"""InferenceModel: one model at one version, built into one signed image per platform.

The kind, its spec and its status; the spec's parts (weights source, runtime,
optimisations, probe) are in :mod:`edgefleet.api.inferencemodel_parts`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from edgefleet.api.inferencemodel_parts import (
    ModelSource,
    Optimizations,
    Probe,
    Quantization,
    RuntimeSpec,
)
from edgefleet.api.meta import (
    API_VERSION,
    DNS_LABEL,
    ApiModel,
    ConfigValues,
    ObjectMeta,
    ObjectStatus,
    Platform,
    PlatformSet,
    cel,
)

__all__ = [
    "AppliedOptimization",
    "BuiltImage",
    "HistoryEntry",
    "InferenceModel",
    "InferenceModelSpec",
    "InferenceModelStatus",
]

DIGEST = r"^sha256:[a-f0-9]{64}$"
VERSION_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._+-]{0,62}[A-Za-z0-9])?$"


#: The device refuses a desired-state document whose host device path contains "..".
_NO_DOTDOT = "self.all(d, !d.contains('..'))"
_NO_DOTDOT_MESSAGE = (
    "hostDevices must be paths under /dev/ without '..': the device refuses any other"
)


class InferenceModelSpec(ApiModel):
    """What to build: one model at one version for a set of platforms."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.optimizations) || self.optimizations.all(o,"
                    " o.platforms.all(p, p in self.platforms))",
                    "every platform of an optimization must be one of spec.platforms",
                    field_path=".optimizations",
                )
            ]
        }
    )

    version: str = Field(max_length=64, pattern=VERSION_PATTERN)
    """Version of the model, e.g. 1.4.0 or 2026-11-23; part of the image tag."""
    source: ModelSource
    """Where the weights come from."""
    format: Literal["onnx"] = "onnx"
    """Model file format."""
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    """Serving runtime and its settings."""
    platforms: PlatformSet
    """Target platforms, e.g. linux/amd64, linux/arm64, linux/arm/v7."""
    optimizations: Optimizations = Field(default_factory=list)
    """Optional per-platform optimisations; a platform appears in at most one."""
    probe: Probe | None = None
    """Health probe: a sample input and the answer that counts as correct."""
    config: ConfigValues = Field(default_factory=dict)
    """Configuration values for every device running this model (lowest precedence)."""
    host_devices: list[
        Annotated[str, Field(max_length=128, pattern=r"^/dev/[A-Za-z0-9/_.-]+$")]
    ] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "x-kubernetes-validations": [cel(_NO_DOTDOT, _NO_DOTDOT_MESSAGE)],
        },
    )
    """Host devices the model needs (a camera such as /dev/video0, a GPU node); the agent
    maps them into the container and reports a condition when the device lacks one."""

    def model_post_init(self, context: Any, /) -> None:
        if len(set(self.host_devices)) != len(self.host_devices):
            raise ValueError("hostDevices must not repeat")
        if any(".." in path for path in self.host_devices):
            raise ValueError(_NO_DOTDOT_MESSAGE)
        targets = set(self.platforms)
        for optimization in self.optimizations:
            stray = [p for p in optimization.platforms if p not in targets]
            if stray:
                raise ValueError(
                    "every platform of an optimization must be one of spec.platforms;"
                    f" {', '.join(stray)} is not"
                )


class AppliedOptimization(ApiModel):
    """What an optimisation did to one platform's model, measured on the probe input."""

    quantization: Quantization
    """The quantisation applied."""
    weights_bytes: int = Field(ge=0)
    """Size of the optimised model file."""
    original_weights_bytes: int = Field(ge=0)
    """Size of the model file before optimisation."""
    probe_max_abs_error: float | None = Field(default=None, ge=0)
    """Largest absolute difference from the original model's answer to the probe."""
    probe_passes: bool | None = None
    """Whether the optimised answer is within the probe's tolerance of the expected one."""
    latency_ratio: float | None = Field(default=None, ge=0)
    """Optimised ÷ original median probe latency, measured on the build host."""


class BuiltImage(ApiModel):
    """The image built for one platform."""

    platform: Platform
    """Platform of this image."""
    digest: str = Field(pattern=r"^sha256:[a-f0-9]{64}$")
    """Digest of the platform manifest."""
    size_bytes: int = Field(ge=0)
    """Compressed size of all layers."""
    model_layer_bytes: int = Field(default=0, ge=0)
    """Compressed size of the model layer (what a weights-only update sends)."""
    build_seconds: float = Field(default=0.0, ge=0)
    """Wall-clock time the build of this platform took."""
    signature: str | None = Field(default=None, max_length=1024)
    """Reference of the cosign signature manifest (…:sha256-<hex>.sig)."""
    optimization: AppliedOptimization | None = None
    """The optimisation applied to this platform's model, and what it cost."""


class HistoryEntry(ApiModel):
    """An earlier build, kept so rollouts can roll back to it."""

    version: str = Field(max_length=64)
    """Model version of that build."""
    index_digest: str = Field(pattern=r"^sha256:[a-f0-9]{64}$")
    """Digest of its image index."""
    built_at: str = Field(max_length=64)
    """When it was built (RFC 3339)."""


class InferenceModelStatus(ObjectStatus):
    """Observed state, written by the operator only.

    Conditions: Built, Signed, Ready, Reconciling, Stalled.
    """

    repository: str | None = Field(default=None, max_length=1024)
    """Registry repository the images were pushed to."""
    index_digest: str | None = Field(default=None, pattern=r"^sha256:[a-f0-9]{64}$")
    """Digest of the multi-platform image index."""
    images: list[BuiltImage] = Field(default_factory=list, max_length=3)
    """Per-platform images."""
    build_key: str | None = Field(default=None, max_length=128)
    """Hash over every build input; an unchanged key never rebuilds."""
    history: list[HistoryEntry] = Field(default_factory=list, max_length=10)
    """Earlier builds, newest first."""


_NAME_MESSAGE = (
    "an InferenceModel name must be a DNS label (at most 63 lowercase alphanumerics or '-',"
    " no '.'): devices run a workload under the model's name"
)


class InferenceModel(ApiModel):
    """An ONNX model at one version, built and signed for each target platform."""

    KIND: ClassVar[str] = "InferenceModel"
    PLURAL: ClassVar[str] = "inferencemodels"

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.metadata.name.size() <= 63 && self.metadata.name.matches('{DNS_LABEL}')",
                    _NAME_MESSAGE,
                )
            ]
        }
    )

    api_version: Literal["edgefleet.io/v1alpha1"] = API_VERSION
    kind: Literal["InferenceModel"] = "InferenceModel"
    metadata: ObjectMeta
    spec: InferenceModelSpec
    status: InferenceModelStatus | None = Field(
        default=None, json_schema_extra={"default": {"observedGeneration": 0}}
    )
    """Defaulted to observedGeneration 0 by the API server, so kstatus (Flux's health
    checks) reads an object no controller has looked at yet as InProgress, never Current."""

    def model_post_init(self, context: Any, /) -> None:
        name = self.metadata.name
        if len(name) > 63 or not re.fullmatch(DNS_LABEL, name):
            raise ValueError(f"{_NAME_MESSAGE}; {name!r} is not")
