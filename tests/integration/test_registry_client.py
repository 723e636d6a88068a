"""RegistryClient and the cosign-format signer against a real registry (docker-registry, TLS)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from edgefleet.clients.registry import (
    PushOutcome,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
)
from edgefleet.clients.signer import sign_and_push
from edgefleet.domain import oci, signing
from edgefleet.testing.registry import LocalRegistry, registry_unavailable
from edgefleet_node.trust import cosign

PLATFORMS = [oci.Platform.parse("linux/amd64"), oci.Platform.parse("linux/arm64")]


@pytest.fixture
def client(registry: LocalRegistry) -> Iterator[RegistryClient]:
    with RegistryClient(registry.url, ca_bundle=registry.ca_path) as c:
        yield c


def repo() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


def runtime_layer(platform: oci.Platform) -> oci.Layer:
    # Random bytes: gzip cannot shrink them, so sizes below are real transfer sizes.
    return oci.build_layer(
        [oci.FileEntry.file(f"opt/runtime/{platform.architecture}.bin", os.urandom(300_000))]
    )


def push_model_image(
    client: RegistryClient, name: str, runtimes: dict[oci.Platform, oci.Layer], weights: bytes
) -> tuple[oci.Layer, list[oci.Blob]]:
    """Push one image per platform (runtime layer + model layer) and an index.

    Returns the model layer and every config, manifest and index blob made.
    """
    model = oci.build_layer([oci.FileEntry.file("models/model.onnx", weights)])
    documents, entries = [], []
    for platform, runtime in runtimes.items():
        config = oci.image_config(
            platform, [runtime.diff_id, model.diff_id], entrypoint=["/opt/runtime/serve"]
        )
        for blob in (runtime.blob, model.blob, config):
            client.push_blob(name, blob)
        manifest = oci.image_manifest(config, [runtime, model])
        client.put_manifest(name, manifest.digest, manifest)
        entries.append((manifest.descriptor(), platform))
        documents += [config, manifest]
    index = oci.image_index(entries)
    client.put_manifest(name, "v1", index)
    return model, [*documents, index]


def test_weights_only_rebuild_uploads_only_the_model_layer_configs_and_manifests(
    client: RegistryClient,
) -> None:
    name = repo()
    runtimes = {p: runtime_layer(p) for p in PLATFORMS}
    push_model_image(client, name, runtimes, os.urandom(200_000))
    assert client.stats.blobs_uploaded == 2 + 1 + 2  # two runtimes, one model, two configs

    before = client.snapshot()
    build = client.metered()  # a build's own view: it alone records the digests it sent
    model, documents = push_model_image(build, name, runtimes, os.urandom(200_000))
    after = client.snapshot()
    configs = [d for d in documents if d.media_type == oci.OCI_CONFIG]
    new_blobs = build.snapshot().uploaded_digests
    assert after.uploaded_digests == before.uploaded_digests == []  # nothing grows forever
    assert sorted(new_blobs) == sorted([model.blob.digest, *(c.digest for c in configs)])
    assert after.blob_bytes_uploaded - before.blob_bytes_uploaded == model.blob.size + sum(
        c.size for c in configs
    )
    sent = after.bytes_uploaded - before.bytes_uploaded
    assert sent == sum(d.size for d in documents) + model.blob.size
    assert sent / model.blob.size < 1.05  # DESIGN §6: close to 1.0
    assert after.blobs_skipped - before.blobs_skipped == 2 + 1  # runtimes; model on 2nd platform

    body, media_type, digest = client.get_manifest(name, "v1")
    assert (media_type, digest) == (oci.OCI_INDEX, documents[-1].digest)
    arm = oci.parse_index(body, media_type, digest).find(oci.Platform.parse("linux/arm64"))
    manifest_body, manifest_type, _ = client.get_manifest(name, arm.digest)
    image = oci.parse_manifest(manifest_body, manifest_type, arm.digest)
    image.require_image()
    config = oci.parse_config(client.get_blob(name, image.config.digest), image.config.digest)
    assert config.platform == oci.Platform.parse("linux/arm64")
    assert config.diff_ids[1] == model.diff_id
    assert client.get_blob(name, image.layers[1].digest) == model.blob.data


def test_push_skips_existing_and_mounts_across_repositories(client: RegistryClient) -> None:
    source, target = repo(), repo()
    blob = oci.Blob(os.urandom(50_000), oci.OCI_LAYER_GZIP)
    assert client.push_blob(source, blob) is PushOutcome.UPLOADED
    assert client.push_blob(source, blob) is PushOutcome.SKIPPED
    before = client.snapshot()
    assert client.push_blob(target, blob, mount_from=source) is PushOutcome.MOUNTED
    after = client.snapshot()
    assert after.blob_bytes_uploaded == before.blob_bytes_uploaded
    assert client.has_blob(target, blob.digest)
    assert client.get_blob(target, blob.digest) == blob.data
    assert after.blob_bytes_uploaded == blob.size
    third = repo()
    assert client.mount_blob(third, blob.digest, source)
    assert client.has_blob(third, blob.digest)
    assert not client.mount_blob(third, oci.sha256_digest(b"absent"), source)


def test_chunked_upload_and_manifest_round_trip(registry: LocalRegistry) -> None:
    name = repo()
    data = os.urandom(300_000)
    with RegistryClient(registry.url, ca_bundle=registry.ca_path, chunk_size=64 * 1024) as c:
        layer = oci.Blob(data, oci.OCI_LAYER_GZIP)
        assert c.push_blob(name, layer) is PushOutcome.UPLOADED
        assert c.stats.blob_bytes_uploaded == len(data)
        config = oci.image_config(PLATFORMS[0], [oci.sha256_digest(b"diff")])
        c.push_blob(name, config)
        manifest = oci.image_manifest(config, [layer])
        assert c.put_manifest(name, "latest", manifest) == manifest.digest
        assert c.get_manifest(name, "latest") == (manifest.data, oci.OCI_MANIFEST, manifest.digest)
        head = c.head_manifest(name, "latest")
        assert head == oci.Descriptor(oci.OCI_MANIFEST, manifest.digest, manifest.size)
        assert c.list_tags(name) == ["latest"]
        assert c.get_blob(name, layer.digest) == data


def test_missing_things_raise_typed_errors(client: RegistryClient) -> None:
    name = repo()
    with pytest.raises(RegistryError) as manifest:
        client.get_manifest(name, "nope")
    with pytest.raises(RegistryError) as blob:
        client.get_blob(name, oci.sha256_digest(b"nope"))
    assert manifest.value.not_found
    assert manifest.value.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")
    assert blob.value.not_found
    assert client.head_manifest(name, "nope") is None
    assert not client.has_blob(name, oci.sha256_digest(b"nope"))


def test_basic_auth_registry() -> None:
    if (why := registry_unavailable(auth=True)) is not None:
        pytest.skip(why)
    with LocalRegistry(auth=True) as reg:
        creds = reg.credentials
        assert creds is not None
        blob = oci.Blob(b"secret layer", oci.OCI_LAYER_GZIP)
        anonymous = RegistryClient(reg.url, ca_bundle=reg.ca_path)
        with anonymous, pytest.raises(RegistryAuthError) as refused:
            anonymous.push_blob("private/m", blob)
        assert refused.value.status == 401
        with RegistryClient(
            reg.url, ca_bundle=reg.ca_path, username=creds.username, password=creds.password
        ) as client:
            assert client.push_blob("private/m", blob) is PushOutcome.UPLOADED
            assert client.get_blob("private/m", blob.digest) == blob.data


def test_signatures_round_trip_through_the_registry(client: RegistryClient) -> None:
    name = repo()
    config = oci.image_config(PLATFORMS[0], [])
    client.push_blob(name, config)
    manifest = oci.image_manifest(config, [])
    digest = client.put_manifest(name, "v1", manifest)
    keys = [signing.generate_key(), signing.generate_key()]

    first = sign_and_push(client, name, digest, keys[0])
    duplicate = sign_and_push(client, name, digest, keys[0])
    second = sign_and_push(client, name, digest, keys[1])
    assert (first.appended, duplicate.appended, second.appended) == (True, False, True)
    assert second.signatures == 2
    assert f"sha256-{digest.removeprefix('sha256:')}.sig" in client.list_tags(name)

    body, _, _ = client.get_manifest(name, first.tag)
    payloads = {
        layer.digest: client.get_blob(name, layer.digest)
        for layer in cosign.parse_signature_manifest(body)
    }
    for key in keys:
        verified = cosign.verify_signatures(
            body, payloads, digest, signing.public_key_pem(key), f"{client.host}/{name}"
        )
        assert verified.payload.manifest_digest == digest
    with pytest.raises(cosign.SignatureError):
        cosign.verify_signatures(
            body, payloads, digest, signing.public_key_pem(signing.generate_key())
        )
