"""Deterministic ONNX test models, built locally with the ``onnx`` package.

:func:`make_mlp` writes a two-layer perceptron ``relu(x @ W1 + b1) @ W2 + b2`` whose
hidden width is chosen so the file is close to ``target_bytes`` (about 50 KB for
fast tests, about 20 MB for the benchmark). The same seed gives a byte-identical
file; another seed changes only the weight bytes (graph, names and sizes stay
the same), which is exactly a "weights-only update". Opset 17 and IR version 8
load in every onnxruntime from 1.20 on.

The fixture carries a probe input (the same for every seed) and the answer numpy
computes for it, so a health probe can check the served answer within
:attr:`ModelFixture.rtol` / :attr:`ModelFixture.atol`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["IR_VERSION", "OPSET", "ModelFixture", "make_mlp"]

OPSET = 17
IR_VERSION = 8
_PROBE_SEED = 20261123
_FLOAT_BYTES = 4


@dataclass(frozen=True)
class ModelFixture:
    """A model written to disk with what a probe needs to check it."""

    path: Path
    sha256: str
    size: int
    input_name: str
    output_name: str
    probe_input: npt.NDArray[np.float32]
    expected_output: npt.NDArray[np.float32]
    rtol: float = 1e-3
    atol: float = 1e-4

    def probe_request(self) -> dict[str, Any]:
        """The ``/v1/predict`` body for the probe input."""
        return {"inputs": {self.input_name: self.probe_input.tolist()}}

    def probe_spec(self, tolerance: float) -> dict[str, Any]:
        """The InferenceModel ``spec.probe`` (camelCase) for this model's probe."""
        return {
            "inputName": self.input_name,
            "shape": list(self.probe_input.shape),
            "values": [float(v) for v in self.probe_input.ravel()],
            "outputName": self.output_name,
            "expected": [float(v) for v in self.expected_output.ravel()],
            "tolerance": tolerance,
        }

    def matches(self, outputs: dict[str, Any]) -> bool:
        """Whether a ``/v1/predict`` ``outputs`` object holds the expected answer."""
        got = outputs.get(self.output_name)
        if got is None:
            return False
        array = np.asarray(got, dtype=np.float32)
        return array.shape == self.expected_output.shape and bool(
            np.allclose(array, self.expected_output, rtol=self.rtol, atol=self.atol)
        )


def _hidden_width(target_bytes: int, in_features: int, out_features: int) -> int:
    per_hidden = _FLOAT_BYTES * (in_features + 1 + out_features)
    fixed = _FLOAT_BYTES * out_features + 400  # second bias + graph overhead
    return max(1, (target_bytes - fixed) // per_hidden)


def make_mlp(
    path: Path,
    *,
    target_bytes: int,
    seed: int,
    in_features: int = 64,
    out_features: int = 8,
) -> ModelFixture:
    """Write an MLP of about ``target_bytes`` to ``path``; see the module docstring."""
    if target_bytes <= 0:
        raise ValueError(f"target_bytes must be positive, got {target_bytes}")
    hidden = _hidden_width(target_bytes, in_features, out_features)
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((in_features, hidden)) / np.sqrt(in_features)).astype(np.float32)
    b1 = (rng.standard_normal(hidden) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((hidden, out_features)) / np.sqrt(hidden)).astype(np.float32)
    b2 = (rng.standard_normal(out_features) * 0.1).astype(np.float32)

    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="bias1"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"], name="fc2"),
        helper.make_node("Add", ["h3", "b2"], ["output"], name="bias2"),
    ]
    graph = helper.make_graph(
        nodes,
        "edgefleet-mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, in_features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, out_features])],
        [
            numpy_helper.from_array(a, n)
            for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgefleet-testing",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    data = model.SerializeToString(deterministic=True)
    path.write_bytes(data)

    probe = np.random.default_rng(_PROBE_SEED).standard_normal((1, in_features)).astype(np.float32)
    hidden_act = np.maximum(probe.astype(np.float64) @ w1 + b1, 0.0)
    expected = (hidden_act @ w2 + b2).astype(np.float32)
    return ModelFixture(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        input_name="input",
        output_name="output",
        probe_input=probe,
        expected_output=expected,
    )
