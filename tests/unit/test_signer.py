"""sign_and_push against an in-memory registry: first signature, duplicates, appending."""

from __future__ import annotations

from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.signer import sign_and_push
from edgefleet.domain import oci, signing
from edgefleet_node.trust import cosign
from tests.unit.registry_fake import BASE, FakeRegistry

REPO = "models/resnet"


def fetch_and_verify(reg: RegistryClient, digest: str, public_pem: bytes):
    data, _, _ = reg.get_manifest(REPO, signing.signature_tag(digest))
    layers = cosign.parse_signature_manifest(data)
    payloads = {layer.digest: reg.get_blob(REPO, layer.digest) for layer in layers}
    return cosign.verify_signatures(
        data, payloads, digest, public_pem, f"registry.test:5000/{REPO}"
    )


def test_sign_append_and_skip_duplicates():
    fake = FakeRegistry()
    image = oci.Blob(b'{"schemaVersion":2}', oci.OCI_MANIFEST)
    first_key, second_key = signing.generate_key(), signing.generate_key()
    with RegistryClient(BASE, transport=fake.transport()) as reg:
        reg.put_manifest(REPO, "v1", image)

        first = sign_and_push(reg, REPO, image.digest, first_key)
        assert first.appended
        assert first.signatures == 1
        assert first.tag == "sha256-" + image.digest.removeprefix("sha256:") + ".sig"

        before = reg.snapshot()
        again = sign_and_push(reg, REPO, image.digest, first_key)
        assert not again.appended
        assert again.manifest_digest == first.manifest_digest
        assert reg.snapshot().bytes_uploaded == before.bytes_uploaded

        second = sign_and_push(reg, REPO, image.digest, second_key)
        assert second.appended
        assert second.signatures == 2
        for key in (first_key, second_key):
            verified = fetch_and_verify(reg, image.digest, signing.public_key_pem(key))
            assert verified.payload.manifest_digest == image.digest
        # the payload blob is shared: identical payload bytes, one blob
        assert first.payload_digest == second.payload_digest
