"""cosign-format signatures: payload and manifest shape, sign→verify, and tampering."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.domain import oci, signing
from edgefleet_node.trust import cosign
from edgefleet_node.trust.cosign import SignatureError

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REF = "127.0.0.1:5000/models/resnet"
KEY = signing.generate_key()
PUB = signing.public_key_pem(KEY)


def signed(
    digest: str = DIGEST, ref: str = REF, key: ec.EllipticCurvePrivateKey = KEY
) -> tuple[bytes, dict[str, bytes]]:
    """A signature manifest and its payloads, as a registry would hold them."""
    payload = signing.build_payload(ref, digest)
    layer = signing.signature_layer(payload, signing.sign_payload(key, payload))
    image = signing.signature_image([layer])
    return image.manifest.data, {layer.digest: payload}


def edit_layer(manifest: bytes, **changes) -> bytes:
    doc = json.loads(manifest)
    doc["layers"][0].update(changes)
    return json.dumps(doc).encode()


def test_payload_is_byte_for_byte_what_cosign_writes():
    assert signing.build_payload(REF, DIGEST) == (
        b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/models/resnet"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    with_optional = json.loads(signing.build_payload(REF, DIGEST, {"b": "2", "a": "1"}))
    assert with_optional["optional"] == {"a": "1", "b": "2"}


def test_signature_manifest_has_cosigns_shape():
    manifest, payloads = signed()
    doc = json.loads(manifest)
    (layer,) = doc["layers"]
    (payload,) = payloads.values()
    assert list(doc) == ["schemaVersion", "mediaType", "config", "layers"]
    assert doc["mediaType"] == oci.OCI_MANIFEST
    assert doc["config"]["mediaType"] == oci.OCI_CONFIG
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert layer["size"] == len(payload)
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    KEY.public_key().verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    config = signing.signature_image([oci.Descriptor.from_json(layer)]).config
    assert config.data == (
        b'{"architecture":"","created":"0001-01-01T00:00:00Z",'
        b'"history":[{"created":"0001-01-01T00:00:00Z"}],"os":"",'
        b'"rootfs":{"type":"layers","diff_ids":["' + layer["digest"].encode() + b'"]},'
        b'"config":{}}'
    )
    assert signing.signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"


def test_sign_then_verify_round_trip():
    manifest, payloads = signed()
    verified = cosign.verify_signatures(manifest, payloads, DIGEST, PUB, expected_reference=REF)
    assert verified.payload.manifest_digest == DIGEST
    assert verified.payload.docker_reference == REF
    assert verified.layer_digest in payloads


def test_tampered_payload_is_rejected():
    manifest, payloads = signed()
    (digest, payload) = next(iter(payloads.items()))
    forged = payload.replace(DIGEST.encode(), OTHER.encode())
    with pytest.raises(SignatureError, match="does not match the layer"):
        cosign.verify_signatures(manifest, {digest: forged}, OTHER, PUB)
    # …also when the manifest is rewritten to point at the forged payload
    forged_manifest = edit_layer(manifest, digest=oci.sha256_digest(forged), size=len(forged))
    with pytest.raises(SignatureError, match="does not verify"):
        cosign.verify_signatures(forged_manifest, {oci.sha256_digest(forged): forged}, OTHER, PUB)


def test_tampered_signature_is_rejected():
    manifest, payloads = signed()
    layer = json.loads(manifest)["layers"][0]
    raw = bytearray(base64.b64decode(layer["annotations"][cosign.SIGNATURE_ANNOTATION]))
    raw[-1] ^= 0x01
    bad = edit_layer(
        manifest, annotations={cosign.SIGNATURE_ANNOTATION: base64.b64encode(raw).decode()}
    )
    with pytest.raises(SignatureError, match="does not verify"):
        cosign.verify_signatures(bad, payloads, DIGEST, PUB)


def test_signature_for_another_digest_is_rejected():
    manifest, payloads = signed(digest=OTHER)
    with pytest.raises(SignatureError, match="not the expected"):
        cosign.verify_signatures(manifest, payloads, DIGEST, PUB)


def test_wrong_key_is_rejected():
    manifest, payloads = signed(key=signing.generate_key())
    with pytest.raises(SignatureError, match="does not verify"):
        cosign.verify_signatures(manifest, payloads, DIGEST, PUB)


def test_wrong_layer_digest_is_rejected():
    manifest, payloads = signed()
    bad = edit_layer(manifest, digest=OTHER)
    with pytest.raises(SignatureError, match="payload not fetched"):
        cosign.verify_signatures(bad, payloads, DIGEST, PUB)
    (payload,) = payloads.values()
    with pytest.raises(SignatureError, match="does not match the layer"):
        cosign.verify_signatures(bad, {OTHER: payload}, DIGEST, PUB)


def test_wrong_reference_is_rejected_only_when_asked():
    manifest, payloads = signed(ref="127.0.0.1:5000/other")
    assert cosign.verify_signatures(manifest, payloads, DIGEST, PUB).payload.docker_reference
    with pytest.raises(SignatureError, match="names"):
        cosign.verify_signatures(manifest, payloads, DIGEST, PUB, expected_reference=REF)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            b'{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":'
            b'"%s"},"type":"atomic container signature"},"optional":null}',
            "type",
        ),
        (
            b'{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":'
            b'"%s"},"type":"cosign container image signature","extra":1},"optional":null}',
            "unknown",
        ),
        (
            b'{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":'
            b'"%s"},"type":"cosign container image signature"},"optional":null,"optional":{}}',
            "duplicate",
        ),
        (b"[1]", "object"),
    ],
)
def test_malformed_payloads_are_rejected_even_when_signed(payload: bytes, message: str):
    if b"%s" in payload:
        payload = payload % DIGEST.encode()
    layer = signing.signature_layer(payload, signing.sign_payload(KEY, payload))
    manifest = signing.signature_image([layer]).manifest.data
    with pytest.raises(SignatureError, match=message):
        cosign.verify_signatures(manifest, {layer.digest: payload}, DIGEST, PUB)


def test_one_good_signature_among_bad_ones_is_enough():
    good_manifest, good_payloads = signed()
    bad_manifest, bad_payloads = signed(key=signing.generate_key())
    layers = [json.loads(m)["layers"][0] for m in (bad_manifest, good_manifest)]
    image = signing.signature_image([oci.Descriptor.from_json(d) for d in layers])
    verified = cosign.verify_signatures(
        image.manifest.data, {**bad_payloads, **good_payloads}, DIGEST, PUB
    )
    assert verified.layer_digest == layers[1]["digest"]


def test_manifest_problems_are_signature_errors():
    manifest, payloads = signed()
    no_sig = edit_layer(manifest, annotations={})
    not_b64 = edit_layer(manifest, annotations={cosign.SIGNATURE_ANNOTATION: "%%%"})
    other_type = edit_layer(manifest, mediaType="application/octet-stream")
    for bad, message in [
        (no_sig, "no dev.cosignproject.cosign/signature"),
        (not_b64, "not base64"),
        (other_type, "no simple-signing signatures"),
        (b"not json", "not valid JSON"),
        (manifest.replace(b'"schemaVersion":2', b'"schemaVersion":1'), "schemaVersion"),
    ]:
        with pytest.raises(SignatureError, match=message):
            cosign.verify_signatures(bad, payloads, DIGEST, PUB)
    with pytest.raises(SignatureError, match="not a sha256 digest"):
        cosign.verify_signatures(manifest, payloads, "sha256:short", PUB)


def test_keys_load_from_pem_and_foreign_keys_are_refused():
    encrypted = signing.private_key_pem(KEY, password=b"pw")
    loaded = signing.load_private_key(encrypted, password=b"pw")
    assert signing.public_key_pem(loaded) == PUB
    assert signing.load_public_key(PUB).public_numbers() == KEY.public_key().public_numbers()
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(signing.SigningKeyError, match="P-256"):
        signing.load_private_key(signing.private_key_pem(p384))
    with pytest.raises(SignatureError, match="P-256"):
        cosign.load_public_key(signing.public_key_pem(p384))
    cosign_key = (
        b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nabc\n"
        b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    )
    with pytest.raises(signing.SigningKeyError, match="import-key-pair"):
        signing.load_private_key(cosign_key)
    with pytest.raises(SignatureError, match="not a valid PEM"):
        cosign.load_public_key(b"garbage")


def test_duplicate_detection_matches_cosign():
    payload = signing.build_payload(REF, DIGEST)
    layer = signing.signature_layer(payload, signing.sign_payload(KEY, payload))
    assert signing.is_duplicate(layer, payload, KEY.public_key())
    assert not signing.is_duplicate(layer, payload, signing.generate_key().public_key())
    other_payload = signing.build_payload(REF, OTHER)
    assert not signing.is_duplicate(layer, other_payload, KEY.public_key())
