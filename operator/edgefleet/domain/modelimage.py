"""What a model image is: base layers, the runtime layer, the model layer, one config.

Pure functions over bytes and parsed documents, no I/O:

- :func:`model_layer` — the weights at :data:`MODEL_PATH`, reproducibly;
- :func:`assemble` — config and manifest for one platform on top of a base image;
- :func:`build_key` — a hash over every input of a build, so an unchanged spec never
  rebuilds and a changed one always does;
- :func:`repository_for` — where a model's images live in the registry.

Layer order (base → runtime → model) puts the part that changes most often last, so
an update that changes only the weights re-sends only the model layer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from edgefleet.domain import oci
from edgefleet.domain.runtime_layer import RUNTIME_CMD, RUNTIME_ENV

__all__ = [
    "BUILDER_VERSION",
    "MODEL_PATH",
    "SERVING_PORT",
    "ImageParts",
    "LayerRef",
    "ModelMeta",
    "assemble",
    "build_key",
    "model_layer",
    "repository_for",
]

#: Bump when the image layout changes, so every model rebuilds.
BUILDER_VERSION = "1"
MODEL_PATH = "opt/edgefleet/model/model.onnx"
SERVING_PORT = 8080
_LABEL = "io.edgefleet"


@dataclass(frozen=True)
class ModelMeta:
    """What the image says about the model it carries."""

    namespace: str
    name: str
    version: str
    sha256: str  # hex of the weights as served (after any optimisation)
    source: str  # URL or OCI reference the weights came from
    threads: int = 1


class LayerRef(Protocol):
    """What assembling an image needs of a layer (in memory or in a file)."""

    @property
    def diff_id(self) -> str: ...

    def descriptor(self) -> oci.Descriptor: ...


@dataclass(frozen=True)
class ImageParts:
    """The config and manifest of one platform's image."""

    platform: oci.Platform
    config: oci.Blob
    manifest: oci.Blob


def model_layer(weights: bytes) -> oci.Layer:
    """The model layer: the weights file, read-only, nothing else."""
    return oci.build_layer([oci.FileEntry.file(MODEL_PATH, weights, mode=0o444)])


def assemble(
    base_config: oci.ImageConfig,
    base_layers: Sequence[oci.Descriptor],
    runtime: LayerRef,
    model: LayerRef,
    meta: ModelMeta,
) -> ImageParts:
    """Config and manifest of the model image for ``base_config``'s platform."""
    env = dict(RUNTIME_ENV)
    env.update(
        EDGEFLEET_MODEL_PATH=f"/{MODEL_PATH}",
        EDGEFLEET_MODEL_NAME=meta.name,
        EDGEFLEET_MODEL_VERSION=meta.version,
        EDGEFLEET_MODEL_SHA256=meta.sha256,
        EDGEFLEET_PORT=str(SERVING_PORT),
        EDGEFLEET_THREADS=str(meta.threads),
    )
    labels = {
        "org.opencontainers.image.title": meta.name,
        "org.opencontainers.image.version": meta.version,
        f"{_LABEL}.model.namespace": meta.namespace,
        f"{_LABEL}.model.sha256": meta.sha256,
        f"{_LABEL}.model.source": meta.source,
    }
    config = oci.image_config(
        base_config.platform,
        [runtime.diff_id, model.diff_id],
        cmd=list(RUNTIME_CMD),
        env=env,
        exposed_ports=[SERVING_PORT],
        labels=labels,
        workdir="/",
        user="65534:65534",
        base_config=base_config,
        history=["edgefleet runtime (onnxruntime, numpy, server)", "edgefleet model weights"],
    )
    manifest = oci.image_manifest(
        config,
        [*base_layers, runtime.descriptor(), model.descriptor()],
        annotations={
            "org.opencontainers.image.title": meta.name,
            "org.opencontainers.image.version": meta.version,
        },
    )
    return ImageParts(base_config.platform, config, manifest)


def build_key(
    spec: Mapping[str, object],
    *,
    base_index: str,
    runtime_keys: Mapping[str, str],
    serving_sources: Mapping[str, bytes],
) -> str:
    """sha256 over everything a build depends on (spec, base, runtime, server, layout)."""
    serving = {name: hashlib.sha256(data).hexdigest() for name, data in serving_sources.items()}
    doc = {
        "builder": BUILDER_VERSION,
        "spec": spec,
        "base": base_index,
        "runtime": dict(runtime_keys),
        "serving": serving,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def repository_for(prefix: str, namespace: str, name: str) -> str:
    """Registry repository of a model's images: ``<prefix>/<namespace>/<name>``."""
    return f"{prefix.strip('/')}/{namespace}/{name}"
