"""Deterministic ONNX test models: same seed same bytes, another seed only other weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgefleet.testing.models import IR_VERSION, OPSET, make_mlp


def _without_weights(path: Path) -> bytes:
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        tensor.ClearField("raw_data")
    return bytes(model.SerializeToString(deterministic=True))


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = make_mlp(tmp_path / "a.onnx", target_bytes=50_000, seed=3)
    b = make_mlp(tmp_path / "b.onnx", target_bytes=50_000, seed=3)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.sha256 == b.sha256 == hashlib.sha256(a.path.read_bytes()).hexdigest()
    assert np.array_equal(a.expected_output, b.expected_output)


def test_another_seed_changes_only_the_weights(tmp_path: Path) -> None:
    a = make_mlp(tmp_path / "a.onnx", target_bytes=50_000, seed=1)
    b = make_mlp(tmp_path / "b.onnx", target_bytes=50_000, seed=2)
    assert a.sha256 != b.sha256
    assert a.size == b.size
    assert _without_weights(a.path) == _without_weights(b.path)
    weights_a = {t.name: t.raw_data for t in onnx.load(str(a.path)).graph.initializer}
    weights_b = {t.name: t.raw_data for t in onnx.load(str(b.path)).graph.initializer}
    assert weights_a.keys() == weights_b.keys() == {"w1", "b1", "w2", "b2"}
    assert all(weights_a[n] != weights_b[n] for n in weights_a)
    assert np.array_equal(a.probe_input, b.probe_input)
    assert not np.allclose(a.expected_output, b.expected_output)


@pytest.mark.parametrize("target", [50_000, 1_000_000])
def test_size_is_close_to_the_target(tmp_path: Path, target: int) -> None:
    fixture = make_mlp(tmp_path / "m.onnx", target_bytes=target, seed=0)
    assert abs(fixture.size - target) / target < 0.02
    model = onnx.load(str(fixture.path))
    assert (model.ir_version, model.opset_import[0].version) == (IR_VERSION, OPSET)


def test_onnxruntime_gives_the_expected_output(tmp_path: Path) -> None:
    fixture = make_mlp(tmp_path / "m.onnx", target_bytes=200_000, seed=5)
    session = ort.InferenceSession(str(fixture.path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {fixture.input_name: fixture.probe_input})
    assert fixture.matches({fixture.output_name: output.tolist()})
    assert not fixture.matches({fixture.output_name: (output + 0.1).tolist()})
    assert not fixture.matches({})
    assert fixture.probe_request() == {"inputs": {"input": fixture.probe_input.tolist()}}


def test_rejects_a_non_positive_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="target_bytes must be positive"):
        make_mlp(tmp_path / "m.onnx", target_bytes=0, seed=0)


def test_probe_spec_is_a_valid_inference_model_probe(tmp_path):
    from edgefleet.api.inferencemodel_parts import Probe

    fixture = make_mlp(tmp_path / "m.onnx", target_bytes=50_000, seed=1)
    probe = Probe.model_validate(fixture.probe_spec(tolerance=0.01))
    assert probe.shape == list(fixture.probe_input.shape)
    assert len(probe.values) == fixture.probe_input.size
    assert len(probe.expected) == fixture.expected_output.size
