"""The streamed model layer is byte for byte the in-memory one, and is cached."""

from __future__ import annotations

import hashlib
import os

import pytest

from edgefleet.clients import modellayer
from edgefleet.domain import modelimage


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 1024 * 1024 + 7])
def test_streamed_layer_equals_the_in_memory_layer(tmp_path, size):
    data = os.urandom(size)
    weights = tmp_path / "model.onnx"
    weights.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    streamed = modellayer.model_layer_file(weights, sha, tmp_path)
    in_memory = modelimage.model_layer(data)
    assert streamed.blob.path.read_bytes() == in_memory.blob.data
    assert (streamed.blob.digest, streamed.blob.size) == (
        in_memory.blob.digest,
        in_memory.blob.size,
    )
    assert (streamed.diff_id, streamed.uncompressed_size) == (
        in_memory.diff_id,
        in_memory.uncompressed_size,
    )


def test_a_cached_layer_is_reused_and_a_truncated_one_rebuilt(tmp_path):
    weights = tmp_path / "model.onnx"
    weights.write_bytes(b"w" * 10_000)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    first = modellayer.model_layer_file(weights, sha, tmp_path)
    mtime = first.blob.path.stat().st_mtime_ns
    assert modellayer.model_layer_file(weights, sha, tmp_path) == first
    assert first.blob.path.stat().st_mtime_ns == mtime, "not written again"
    first.blob.path.write_bytes(first.blob.path.read_bytes()[:10])
    again = modellayer.model_layer_file(weights, sha, tmp_path)
    assert again.blob.path.read_bytes() == modelimage.model_layer(weights.read_bytes()).blob.data
