"""Build-time model optimisation: int8 dynamic quantisation with ONNX Runtime.

Quantises the weights of MatMul/Gemm nodes to int8 (activations stay float and are
quantised on the fly), then measures what it cost on the model's own probe input: the
largest absolute difference from the original model's answer and from the expected
one, and the median latency of both models on the build host (a relative figure —
the device is not the build host). Quantisation is deterministic: the same weights
give the same bytes, so image digests stay reproducible.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.api.inferencemodel_parts import Probe

__all__ = ["OptimizationError", "OptimizedModel", "quantize_int8_dynamic"]

_LATENCY_RUNS = 30


class OptimizationError(RuntimeError):
    """The model could not be optimised; the message says why."""


@dataclass(frozen=True)
class OptimizedModel:
    weights: bytes
    sha256: str
    original_bytes: int
    probe_max_abs_error: float | None  # against the original model's answer
    probe_passes: bool | None  # the quantised answer is within the probe's tolerance
    latency_ratio: float | None  # quantised / original median latency on the build host


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _probe_run(session: Any, probe: Probe) -> tuple[Any, float]:
    import numpy as np

    feed = {probe.input_name: np.asarray(probe.values, dtype=np.float32).reshape(probe.shape)}
    session.run([probe.output_name], feed)  # warm-up
    times = []
    output = None
    for _ in range(_LATENCY_RUNS):
        start = time.perf_counter()
        output = session.run([probe.output_name], feed)[0]
        times.append(time.perf_counter() - start)
    return output, statistics.median(times)


def quantize_int8_dynamic(weights: bytes, probe: Probe | None) -> OptimizedModel:
    """Quantise ``weights`` (an ONNX model) and measure the effect on ``probe``."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:  # pragma: no cover - a packaging error, not a user error
        raise OptimizationError("Int8Dynamic needs onnxruntime in the operator image") from exc
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="edgefleet-quantize-") as tmp:
        source, target = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        source.write_bytes(weights)
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        except Exception as exc:  # onnxruntime raises many types for bad models
            raise OptimizationError(f"int8 dynamic quantisation failed: {exc}") from exc
        quantized = target.read_bytes()
        error = passes = ratio = None
        if probe is not None:
            try:
                original, t_original = _probe_run(_session(source), probe)
                result, t_quantized = _probe_run(_session(target), probe)
            except Exception as exc:
                raise OptimizationError(f"probe on the quantised model failed: {exc}") from exc
            error = float(np.max(np.abs(result - original)))
            expected = np.asarray(probe.expected, dtype=np.float32).reshape(result.shape)
            passes = bool(np.max(np.abs(result - expected)) <= probe.tolerance)
            ratio = t_quantized / t_original if t_original > 0 else None
    return OptimizedModel(
        weights=quantized,
        sha256=hashlib.sha256(quantized).hexdigest(),
        original_bytes=len(weights),
        probe_max_abs_error=error,
        probe_passes=passes,
        latency_ratio=ratio,
    )
