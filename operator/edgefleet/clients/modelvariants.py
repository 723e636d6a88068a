"""The model file each platform gets: the weights as fetched, or an optimised variant.

Platforms that share an optimisation share one variant (and so one model layer);
each variant is computed once per build. Layers are streamed from files
(:mod:`edgefleet.clients.modellayer`); only an optimisation reads the model into
memory (ONNX Runtime's quantiser needs it whole).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgefleet.api.inferencemodel import InferenceModelSpec
from edgefleet.clients import modellayer, optimizer
from edgefleet.clients.modelsource import ModelFile

__all__ = ["ModelVariant", "prepare_variants"]


@dataclass(frozen=True)
class ModelVariant:
    quantization: str  # "None" or the quantisation applied
    weights_sha256: str
    layer: modellayer.FileLayer
    optimized: optimizer.OptimizedModel | None


def _store_optimized(weights: bytes, sha256: str, cache_dir: Path) -> Path:
    directory = cache_dir / "optimized"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / sha256
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".part-")
        with os.fdopen(fd, "wb") as f:
            f.write(weights)
        os.replace(tmp, path)
    return path


def prepare_variants(
    spec: InferenceModelSpec, model: ModelFile, cache_dir: Path, say: Callable[[str], None]
) -> dict[str, ModelVariant]:
    """Platform → variant. Raises :class:`optimizer.OptimizationError`."""
    mode_of = {p: o.quantization for o in spec.optimizations for p in o.platforms}
    made: dict[str, ModelVariant] = {}
    variants: dict[str, ModelVariant] = {}
    for platform in spec.platforms:
        mode = mode_of.get(platform, "None")
        if mode not in made:
            if mode == "Int8Dynamic":
                result = optimizer.quantize_int8_dynamic(model.read_bytes(), spec.probe)
                say(
                    f"int8 dynamic quantisation: {model.size} → {len(result.weights)} bytes,"
                    f" probe error {result.probe_max_abs_error}"
                )
                path = _store_optimized(result.weights, result.sha256, cache_dir)
                layer = modellayer.model_layer_file(path, result.sha256, cache_dir)
                made[mode] = ModelVariant(mode, result.sha256, layer, result)
            else:
                layer = modellayer.model_layer_file(model.path, model.sha256, cache_dir)
                made[mode] = ModelVariant(mode, model.sha256, layer, None)
        variants[platform] = made[mode]
    return variants
