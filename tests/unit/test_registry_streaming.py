"""Large blobs stream: uploads from a file in chunks, downloads to a file while hashing."""

from __future__ import annotations

import os

import httpx
import pytest

from edgefleet.clients.registry import DigestMismatchError, FileBlob, RegistryClient
from edgefleet.clients.registry_errors import BlobTooLargeError
from edgefleet.domain import oci
from tests.unit.registry_fake import BASE, FakeRegistry


def _file_blob(tmp_path, data: bytes) -> FileBlob:
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(data)
    return FileBlob(path, oci.OCI_LAYER_GZIP, oci.sha256_digest(data), len(data))


def test_a_file_blob_uploads_in_chunks_and_arrives_whole(tmp_path):
    fake = FakeRegistry()
    data = os.urandom(10_000)
    with RegistryClient(BASE, transport=fake.transport(), chunk_size=4096) as reg:
        reg.push_blob("m", _file_blob(tmp_path, data))
        assert reg.stats.blob_bytes_uploaded == len(data)
    assert fake.blobs["m"][oci.sha256_digest(data)] == data
    patches = [r for r in fake.requests if r.method == "PATCH"]
    assert [len(r.content) for r in patches] == [4096, 4096, 1808]


def test_download_streams_to_the_file_and_verifies(tmp_path):
    fake = FakeRegistry()
    data = os.urandom(100_000)
    fake.blobs["m"] = {oci.sha256_digest(data): data}
    dest = tmp_path / "out" / "weights"
    with RegistryClient(BASE, transport=fake.transport()) as reg:
        assert reg.download_blob("m", oci.sha256_digest(data), dest) == len(data)
        assert reg.stats.bytes_downloaded == len(data)
    assert dest.read_bytes() == data


def test_a_corrupt_download_leaves_nothing_behind(tmp_path):
    fake = FakeRegistry(corrupt_downloads=True)
    data = b"weights"
    fake.blobs["m"] = {oci.sha256_digest(data): data}
    dest = tmp_path / "weights"
    with (
        RegistryClient(BASE, transport=fake.transport()) as reg,
        pytest.raises(DigestMismatchError),
    ):
        reg.download_blob("m", oci.sha256_digest(data), dest)
    assert list(tmp_path.iterdir()) == []


def test_a_download_over_the_limit_stops(tmp_path):
    fake = FakeRegistry()
    data = os.urandom(5000)
    fake.blobs["m"] = {oci.sha256_digest(data): data}
    with (
        RegistryClient(BASE, transport=fake.transport()) as reg,
        pytest.raises(BlobTooLargeError),
    ):
        reg.download_blob("m", oci.sha256_digest(data), tmp_path / "w", max_size=1000)
    assert list(tmp_path.iterdir()) == []


def test_a_retried_download_starts_the_file_over(tmp_path):
    fake = FakeRegistry()
    data = os.urandom(3000)
    fake.blobs["m"] = {oci.sha256_digest(data): data}
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.method == "GET" and len(calls) == 1:
            return httpx.Response(503)
        return fake.handle(request)

    transport = httpx.MockTransport(flaky)
    with RegistryClient(BASE, transport=transport, sleep=lambda _s: None) as reg:
        reg.download_blob("m", oci.sha256_digest(data), tmp_path / "w")
    assert (tmp_path / "w").read_bytes() == data
