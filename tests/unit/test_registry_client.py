"""RegistryClient against an in-memory registry (httpx.MockTransport): auth, push, pull."""

from __future__ import annotations

import httpx
import pytest

from edgefleet.clients.registry import (
    BlobTooLargeError,
    DigestMismatchError,
    PushOutcome,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
)
from edgefleet.domain import oci
from tests.unit.registry_fake import BASE, FakeRegistry


def client(fake: FakeRegistry, **kwargs) -> RegistryClient:
    return RegistryClient(BASE, transport=fake.transport(), **kwargs)


def blob(data: bytes) -> oci.Blob:
    return oci.Blob(data, oci.OCI_LAYER_GZIP)


def test_bearer_challenge_fetches_a_token_and_retries():
    fake = FakeRegistry(auth="bearer")
    with client(fake, username="alice", password="s3cret-pw") as reg:
        assert reg.push_blob("models/a", blob(b"layer")) is PushOutcome.UPLOADED
        assert reg.has_blob("models/a", blob(b"layer").digest)
        assert reg.push_blob("models/a", blob(b"other")) is PushOutcome.UPLOADED
    token = fake.token_requests[0]
    assert token.url.params["service"] == "registry.test"
    assert token.url.params.get_list("scope") == ["repository:models/a:pull,push"]
    # one token per scope: push scope and pull scope, each fetched once
    assert len(fake.token_requests) == 2
    assert fake.blobs["models/a"][blob(b"layer").digest] == b"layer"


def test_basic_challenge_sends_credentials_from_then_on():
    fake = FakeRegistry(auth="basic")
    with client(fake, username="alice", password="s3cret-pw") as reg:
        reg.push_blob("m", blob(b"x"))
        reg.push_blob("m", blob(b"y"))
    unauthenticated = [r for r in fake.requests if "authorization" not in r.headers]
    assert len(unauthenticated) == 1  # only the very first request


def test_missing_or_wrong_credentials_raise_auth_errors_without_leaking_them():
    fake = FakeRegistry(auth="bearer")
    with client(fake) as reg, pytest.raises(RegistryAuthError) as no_creds:
        reg.has_blob("m", blob(b"x").digest)
    with client(fake, username="alice", password="wrong-pw") as reg:
        with pytest.raises(RegistryAuthError) as wrong:
            reg.has_blob("m", blob(b"x").digest)
        assert "wrong-pw" not in repr(reg)
    for exc in (no_creds.value, wrong.value):
        assert "wrong-pw" not in str(exc)
        assert "s3cret" not in str(exc)


def test_existing_blobs_are_skipped_and_not_counted_as_uploaded():
    fake = FakeRegistry()
    with client(fake) as root:
        reg = root.metered()
        assert reg.push_blob("m", blob(b"a" * 100)) is PushOutcome.UPLOADED
        assert reg.push_blob("m", blob(b"a" * 100)) is PushOutcome.SKIPPED
        stats = reg.snapshot()
        totals = root.snapshot()
    assert stats.blob_bytes_uploaded == totals.blob_bytes_uploaded == 100
    assert (stats.blobs_uploaded, stats.blobs_skipped) == (1, 1)
    assert stats.uploaded_digests == [blob(b"a" * 100).digest]
    assert totals.uploaded_digests == [], "the long-lived client keeps no growing list"


def test_cross_repo_mount_uploads_nothing():
    fake = FakeRegistry()
    with client(fake) as reg:
        reg.push_blob("base/debian", blob(b"rootfs"))
        before = reg.snapshot()
        assert reg.push_blob("models/a", blob(b"rootfs"), mount_from="base/debian") == "mounted"
        after = reg.snapshot()
    assert after.blob_bytes_uploaded == before.blob_bytes_uploaded
    assert after.blobs_mounted == 1
    assert fake.blobs["models/a"][blob(b"rootfs").digest] == b"rootfs"


def test_failed_mount_falls_back_to_upload():
    fake = FakeRegistry()
    with client(fake) as reg:
        assert reg.push_blob("models/a", blob(b"z"), mount_from="base/x") is PushOutcome.UPLOADED
    assert fake.blobs["models/a"][blob(b"z").digest] == b"z"


def test_mount_blob_by_digest_without_the_bytes():
    fake = FakeRegistry()
    with client(fake) as reg:
        reg.push_blob("base/debian", blob(b"rootfs"))
        assert reg.mount_blob("models/a", blob(b"rootfs").digest, "base/debian")
        assert not reg.mount_blob("models/a", blob(b"absent").digest, "base/debian")
        assert reg.stats.blobs_mounted == 1
    assert fake.blobs["models/a"] == {blob(b"rootfs").digest: b"rootfs"}
    assert fake.uploads == {}  # the session the declined mount opened was cancelled


def test_big_blobs_go_up_in_chunks():
    fake = FakeRegistry()
    data = bytes(range(256)) * 40  # 10240 bytes
    with client(fake, chunk_size=4096) as reg:
        assert reg.push_blob("m", blob(data)) is PushOutcome.UPLOADED
        assert reg.stats.blob_bytes_uploaded == len(data)
    assert [r.method for r in fake.requests].count("PATCH") == 3
    assert fake.blobs["m"][blob(data).digest] == data


def test_registry_reporting_another_digest_is_an_error():
    fake = FakeRegistry(lie_about_digest=True)
    with client(fake) as reg:
        with pytest.raises(DigestMismatchError):
            reg.push_blob("m", blob(b"q"))
        with pytest.raises(DigestMismatchError):
            reg.put_manifest("m", "v1", oci.Blob(b"{}", oci.OCI_MANIFEST))


def test_downloads_are_digest_verified():
    fake = FakeRegistry()
    manifest = oci.Blob(b'{"schemaVersion":2}', oci.OCI_MANIFEST)
    with client(fake) as reg:
        reg.push_blob("m", blob(b"payload"))
        reg.put_manifest("m", "v1", manifest)
        assert reg.get_blob("m", blob(b"payload").digest) == b"payload"
        assert reg.get_manifest("m", "v1") == (manifest.data, oci.OCI_MANIFEST, manifest.digest)
        fake.corrupt_downloads = True
        with pytest.raises(DigestMismatchError):
            reg.get_blob("m", blob(b"payload").digest)
        with pytest.raises(DigestMismatchError):
            reg.get_manifest("m", manifest.digest)
        with pytest.raises(DigestMismatchError):  # by tag: checked against the reported digest
            reg.get_manifest("m", "v1")


def test_download_size_is_bounded():
    fake = FakeRegistry()
    with client(fake) as reg:
        reg.push_blob("m", blob(b"x" * 1000))
        with pytest.raises(BlobTooLargeError):
            reg.get_blob("m", blob(b"x" * 1000).digest, max_size=999)


def test_registry_errors_carry_status_code_and_message():
    with client(FakeRegistry()) as reg:
        with pytest.raises(RegistryError) as info:
            reg.get_manifest("m", "missing")
        assert reg.head_manifest("m", "missing") is None
    assert info.value.not_found
    assert info.value.code == "MANIFEST_UNKNOWN"
    assert "manifest unknown" in str(info.value)


def test_manifest_counts_and_tags_with_pagination():
    fake = FakeRegistry()
    with client(fake) as reg:
        for tag in ("a", "b", "c", "d", "e"):
            reg.put_manifest("m", tag, oci.Blob(b'{"t":"%s"}' % tag.encode(), oci.OCI_MANIFEST))
        assert reg.list_tags("m") == ["a", "b", "c", "d", "e"]
        assert reg.stats.manifests_pushed == 5
        assert reg.stats.manifest_bytes_uploaded == 5 * len(b'{"t":"a"}')
        assert reg.host == "registry.test:5000"


def test_invalid_names_are_rejected_before_any_request():
    fake = FakeRegistry()
    with client(fake) as reg:
        with pytest.raises(RegistryError, match="invalid repository name"):
            reg.list_tags("Bad/Repo")
        with pytest.raises(RegistryError, match="not a valid tag"):
            reg.get_manifest("m", "bad tag")
    assert fake.requests == []


def test_transport_failures_become_registry_errors():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    reg = RegistryClient(BASE, transport=httpx.MockTransport(refuse))
    with reg, pytest.raises(RegistryError) as info:
        reg.has_blob("m", blob(b"x").digest)
    assert info.value.code == "TRANSPORT"


def test_transient_failures_are_retried_with_backoff():
    answers = iter([503, 429, 200])
    slept: list[float] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            next(answers), headers={"Docker-Content-Digest": "sha256:" + "a" * 64}
        )

    reg = RegistryClient(BASE, transport=httpx.MockTransport(flaky), sleep=slept.append)
    assert reg.has_blob("team/model", "sha256:" + "a" * 64)
    assert slept == [0.5, 1.0]


def test_retries_give_up_and_report_the_last_error():
    calls = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(503)

    reg = RegistryClient(BASE, transport=httpx.MockTransport(down), sleep=lambda _s: None)
    with pytest.raises(RegistryError) as err:
        reg.has_blob("team/model", "sha256:" + "a" * 64)
    assert err.value.status == 503
    assert len(calls) == 4  # one try and three retries


def test_client_errors_are_not_retried():
    calls = []

    def forbidden(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(403)

    reg = RegistryClient(BASE, transport=httpx.MockTransport(forbidden))
    with pytest.raises(RegistryError):
        reg.has_blob("team/model", "sha256:" + "a" * 64)
    assert len(calls) == 1
