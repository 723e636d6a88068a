"""The model file each platform gets: the weights as fetched, or an optimised variant.

Platforms that share an optimisation share one variant (and so one model layer);
each variant is computed once per build.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgefleet.api.inferencemodel import InferenceModelSpec
from edgefleet.clients import optimizer
from edgefleet.domain import modelimage, oci

__all__ = ["ModelVariant", "prepare_variants"]


@dataclass(frozen=True)
class ModelVariant:
    quantization: str  # "None" or the quantisation applied
    weights_sha256: str
    layer: oci.Layer
    optimized: optimizer.OptimizedModel | None


def prepare_variants(
    spec: InferenceModelSpec, weights: bytes, sha256: str, say: Callable[[str], None]
) -> dict[str, ModelVariant]:
    """Platform → variant. Raises :class:`optimizer.OptimizationError`."""
    mode_of = {p: o.quantization for o in spec.optimizations for p in o.platforms}
    made: dict[str, ModelVariant] = {}
    variants: dict[str, ModelVariant] = {}
    for platform in spec.platforms:
        mode = mode_of.get(platform, "None")
        if mode not in made:
            if mode == "Int8Dynamic":
                result = optimizer.quantize_int8_dynamic(weights, spec.probe)
                say(
                    f"int8 dynamic quantisation: {len(weights)} → {len(result.weights)} bytes,"
                    f" probe error {result.probe_max_abs_error}"
                )
                made[mode] = ModelVariant(
                    mode, result.sha256, modelimage.model_layer(result.weights), result
                )
            else:
                made[mode] = ModelVariant(mode, sha256, modelimage.model_layer(weights), None)
        variants[platform] = made[mode]
    return variants
