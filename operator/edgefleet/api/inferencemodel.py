"""InferenceModel: one model at one version, built into one signed image per platform."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field

from edgefleet.api.meta import (
    API_VERSION,
    DNS_LABEL,
    PLATFORMS,
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
    "ModelSource",
    "OciSource",
    "Optimization",
    "Probe",
    "RuntimeSpec",
    "UrlSource",
]

SHA256_HEX = r"^[a-f0-9]{64}$"
DIGEST = r"^sha256:[a-f0-9]{64}$"
VERSION_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._+-]{0,62}[A-Za-z0-9])?$"
#: An OCI reference pinned by digest: registry/repository@sha256:<hex>.
OCI_PINNED = r"^[a-z0-9]([a-z0-9.:-]*[a-z0-9])?(/[a-z0-9]+([._-][a-z0-9]+)*)+@sha256:[a-f0-9]{64}$"


class UrlSource(ApiModel):
    """Weights downloaded over HTTP(S) and pinned by their SHA-256."""

    url: str = Field(max_length=2048, pattern=r"^https?://[^\s]+$")
    """Where the model file is downloaded from."""
    sha256: str = Field(pattern=SHA256_HEX)
    """Hex SHA-256 of the file; a download that does not match fails the build."""


class OciSource(ApiModel):
    """Weights stored as an OCI artifact (ORAS style), pinned by digest."""

    reference: str = Field(max_length=1024, pattern=OCI_PINNED)
    """Artifact reference, e.g. registry.example.com/models/resnet@sha256:<hex>."""
    layer_media_type: str | None = Field(default=None, max_length=255)
    """Media type of the layer that holds the model; the first layer when unset."""


class ModelSource(ApiModel):
    """Where the weights come from: exactly one of url or oci."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.url) != has(self.oci)", "exactly one of url or oci must be set")
            ]
        }
    )

    url: UrlSource | None = None
    """An HTTP(S) download pinned by sha256."""
    oci: OciSource | None = None
    """An OCI artifact pinned by digest."""

    def model_post_init(self, context: Any, /) -> None:
        if (self.url is None) == (self.oci is None):
            raise ValueError("exactly one of url or oci must be set")


class RuntimeSpec(ApiModel):
    """The serving runtime inside the image."""

    name: Literal["onnxruntime"] = "onnxruntime"
    """Inference engine; ONNX Runtime is the one supported today."""
    threads: int = Field(default=1, ge=1, le=64)
    """Intra-op threads the runtime may use on the device."""


Quantization = Literal["None", "Int8Dynamic"]


class Optimization(ApiModel):
    """A per-platform optimisation applied at build time."""

    platforms: PlatformSet
    """Platforms the optimisation applies to."""
    quantization: Quantization = "None"
    """Int8Dynamic quantises MatMul/Gemm weights to int8 (dynamic quantisation, for CPUs)."""


#: Each platform in at most one optimization, counted per platform: comparing entries
#: pairwise (``a == b``) would let two identical entries through.
_DISJOINT = (
    "[" + ", ".join(f"'{p}'" for p in PLATFORMS) + "]"
    ".all(p, self.filter(o, p in o.platforms).size() <= 1)"
)
_DISJOINT_MESSAGE = "a platform may appear in only one optimization"


def _disjoint(optimizations: list[Optimization]) -> list[Optimization]:
    counts = Counter(p for o in optimizations for p in o.platforms)
    twice = sorted(p for p, n in counts.items() if n > 1)
    if twice:
        raise ValueError(f"{_DISJOINT_MESSAGE}; {', '.join(twice)} appears more than once")
    return optimizations


Optimizations = Annotated[
    list[Optimization],
    AfterValidator(_disjoint),
    Field(
        max_length=3,
        json_schema_extra={"x-kubernetes-validations": [cel(_DISJOINT, _DISJOINT_MESSAGE)]},
    ),
]


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


def _product(expr: str, dims: int) -> str:
    return " * ".join(f"(size({expr}) > {i} ? {expr}[{i}] : 1)" for i in range(dims))


_PROBE_DIMS = 8
_PROBE_FILLS_SHAPE = f"size(self.values) == {_product('self.shape', _PROBE_DIMS)}"


class Probe(ApiModel):
    """A real inference the device runs before it calls the model healthy."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    _PROBE_FILLS_SHAPE,
                    "values must fill shape: as many values as the product of the shape",
                    field_path=".values",
                )
            ]
        }
    )

    input_name: str = Field(min_length=1, max_length=128)
    """Name of the model input the sample goes to."""
    shape: list[Annotated[int, Field(ge=1, le=65536)]] = Field(min_length=1, max_length=8)
    """Shape of the sample input."""
    values: list[float] = Field(min_length=1, max_length=4096)
    """The sample input, flattened in row-major order (float32)."""
    output_name: str = Field(min_length=1, max_length=128)
    """Name of the model output that is compared."""
    expected: list[float] = Field(min_length=1, max_length=4096)
    """The expected output, flattened in row-major order."""
    tolerance: float = Field(default=1e-3, ge=0, le=1e6)
    """Largest absolute difference per element that still counts as correct."""

    def model_post_init(self, context: Any, /) -> None:
        cells = math.prod(self.shape)
        if len(self.values) != cells:
            raise ValueError(
                f"values must fill shape: shape {self.shape} needs {cells} values,"
                f" got {len(self.values)}"
            )


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
