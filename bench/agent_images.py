"""The model images bench/agent.py pulls: real ONNX models (``make_mlp``) built, pushed
and signed by the operator's daemonless builder (Debian base, runtime layer with the
onnxruntime/numpy wheels, gzip'd model layer), served to the builder over HTTP on
127.0.0.1. Two versions of the same size and shape differ only in their weights, so
the second is a weights-only update (only the model layer is new)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import httpx

from edgefleet.api.inferencemodel import InferenceModelSpec
from edgefleet.clients import baseimage
from edgefleet.clients.imagebuilder import BuilderSettings, ImageBuilder
from edgefleet.clients.registry import RegistryClient
from edgefleet.testing.files import file_server
from edgefleet.testing.models import make_mlp

__all__ = ["ModelImage", "build_images"]

PLATFORM = "linux/amd64"
BUILDER_CACHE = Path.home() / ".cache" / "edgefleet" / "test-builder"  # as the tests use it


@dataclasses.dataclass(frozen=True)
class ModelImage:
    repository: str  # without the registry host
    index: str
    manifest: str
    model_layer_size: int  # compressed, as pushed
    image_size: int  # config + layers, compressed
    probe: dict[str, Any]  # InferenceModel spec.probe (camelCase)
    build_seconds: float


def build_images(
    registry: RegistryClient, key: Any, work: Path, model_mb: int, seeds: tuple[int, ...]
) -> list[ModelImage]:
    """One image per seed, all of a ~``model_mb`` MiB ONNX model, in one repository."""
    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    baseimage.push_base_index(registry, "edgefleet/base", ("amd64",), tag="bookworm")
    BUILDER_CACHE.mkdir(parents=True, exist_ok=True)
    settings = BuilderSettings(cache_dir=BUILDER_CACHE, max_model_bytes=8 * 1024**3)
    out = []
    with file_server(models) as url, httpx.Client(timeout=300) as http:
        builder = ImageBuilder(registry, key, settings, http=http)
        for seed in seeds:
            path = models / f"model-{seed}.onnx"
            fixture = make_mlp(path, target_bytes=model_mb * 1024 * 1024, seed=seed)
            spec = InferenceModelSpec.model_validate(
                {
                    "version": f"1.0.{seed}",
                    "platforms": [PLATFORM],
                    "source": {"url": {"url": f"{url}/{path.name}", "sha256": fixture.sha256}},
                }
            )
            started = time.monotonic()
            result = builder.build("bench", "model", spec)
            (image,) = result.images
            path.unlink()
            out.append(
                ModelImage(
                    repository=result.repository.partition("/")[2],
                    index=result.index_digest,
                    manifest=image.digest,
                    model_layer_size=image.model_layer_bytes,
                    image_size=image.size_bytes,
                    probe=fixture.probe_spec(1e-3),
                    build_seconds=time.monotonic() - started,
                )
            )
    return out
