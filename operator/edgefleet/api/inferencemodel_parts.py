"""The parts of an InferenceModel's spec: where the weights come from (an HTTP(S) URL or
an OCI artifact, pinned either way), the serving runtime, per-platform optimisations and
the health probe. :mod:`edgefleet.api.inferencemodel` puts them together.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field

from edgefleet.api.meta import PLATFORMS, ApiModel, PlatformSet, cel

__all__ = [
    "ModelSource",
    "OciSource",
    "Optimization",
    "Optimizations",
    "Probe",
    "Quantization",
    "RuntimeSpec",
    "UrlSource",
]

SHA256_HEX = r"^[a-f0-9]{64}$"
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
