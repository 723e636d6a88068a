"""Verify cosign key-based signatures in the classic ``sha256-<hex>.sig`` format.

cosign (``cosign sign --key``, classic format) stores signatures for an image whose
manifest digest is ``sha256:<hex>`` in an OCI image manifest tagged
``sha256-<hex>.sig``: one layer per signature, each layer blob is the JSON
simple-signing *payload* and the layer annotation ``dev.cosignproject.cosign/signature``
holds the base64 of the DER ECDSA signature over exactly those payload bytes.

This module is pure (it needs only ``cryptography``): the caller fetches the signature
manifest and the payload blobs, and :func:`verify_signatures` decides. A signature is
accepted only when the payload bytes hash to the layer's digest, the signature
verifies with the trusted key, the payload has the cosign type and claims exactly the
expected manifest digest (and the expected docker-reference, when given). Anything
else raises :class:`SignatureError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet_node import strictjson

__all__ = [
    "COSIGN_SIGNATURE_TYPE",
    "MAX_PAYLOAD_SIZE",
    "MAX_SIGNATURE_LAYERS",
    "MAX_SIGNATURE_MANIFEST_SIZE",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING_MEDIA_TYPE",
    "SignatureError",
    "SignatureLayer",
    "SimpleSigningPayload",
    "VerifiedSignature",
    "load_public_key",
    "parse_payload",
    "parse_signature_manifest",
    "signature_tag",
    "verify_signature_layer",
    "verify_signatures",
]

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_SIGNATURE_TYPE = "cosign container image signature"
MAX_SIGNATURE_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_PAYLOAD_SIZE = 256 * 1024
MAX_SIGNATURE_LAYERS = 1000  # cosign's own limit

_MANIFEST_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)
_SHA256_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class SignatureError(Exception):
    """A signature is missing, malformed, or does not prove what was asked."""


@dataclass(frozen=True)
class SignatureLayer:
    """One signature entry of a signature manifest (the layer descriptor)."""

    digest: str
    size: int
    signature: bytes  # DER ECDSA signature, decoded from the annotation
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class SimpleSigningPayload:
    """The claims of a simple-signing payload."""

    docker_reference: str
    manifest_digest: str
    optional: Mapping[str, Any] | None


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified, with the layer it came from."""

    layer_digest: str
    payload: SimpleSigningPayload


def _check_digest(digest: str, what: str) -> str:
    if not isinstance(digest, str) or _SHA256_DIGEST.fullmatch(digest) is None:
        raise SignatureError(f"{what} {digest!r} is not a sha256 digest (sha256:<64 hex>)")
    return digest


def signature_tag(manifest_digest: str) -> str:
    """The tag cosign stores signatures of ``manifest_digest`` under."""
    algorithm, _, hex_part = _check_digest(manifest_digest, "manifest digest").partition(":")
    return f"{algorithm}-{hex_part}.sig"


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """Load a P-256 public key from PEM (``cosign.pub`` or any SubjectPublicKeyInfo PEM)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise SignatureError(f"the public key is not a valid PEM public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError("the public key must be an ECDSA P-256 key")
    return key


def _strict_json(data: bytes, what: str) -> dict[str, Any]:
    return strictjson.loads_object(data, what, SignatureError)


def _object(parent: Mapping[str, Any], key: str, what: str, allowed: set[str]) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise SignatureError(f"{what}: {key!r} must be a JSON object")
    unknown = set(value) - allowed
    if unknown:
        raise SignatureError(f"{what}: unknown fields in {key!r}: {sorted(unknown)}")
    return value


def parse_payload(data: bytes) -> SimpleSigningPayload:
    """Parse and check a simple-signing payload; unknown critical fields are rejected."""
    if len(data) > MAX_PAYLOAD_SIZE:
        raise SignatureError(f"signature payload is {len(data)} bytes, over {MAX_PAYLOAD_SIZE}")
    doc = _strict_json(data, "signature payload")
    unknown = set(doc) - {"critical", "optional"}
    if unknown:
        raise SignatureError(f"signature payload has unknown top-level fields {sorted(unknown)}")
    what = "signature payload"
    critical = _object(doc, "critical", what, {"identity", "image", "type"})
    if critical.get("type") != COSIGN_SIGNATURE_TYPE:
        raise SignatureError(
            f"signature payload type is {critical.get('type')!r}, not {COSIGN_SIGNATURE_TYPE!r}"
        )
    identity = _object(critical, "identity", what, {"docker-reference"})
    image = _object(critical, "image", what, {"docker-manifest-digest"})
    reference = identity.get("docker-reference")
    if not isinstance(reference, str):
        raise SignatureError("signature payload: docker-reference must be a string")
    digest = _check_digest(image.get("docker-manifest-digest", ""), "claimed manifest digest")
    optional = doc.get("optional")
    if optional is not None and not isinstance(optional, dict):
        raise SignatureError("signature payload: 'optional' must be an object or null")
    return SimpleSigningPayload(reference, digest, optional)


def _layer(raw: Any, index: int) -> SignatureLayer | None:
    if not isinstance(raw, dict):
        raise SignatureError(f"signature manifest layer {index} is not an object")
    if raw.get("mediaType") != SIMPLE_SIGNING_MEDIA_TYPE:
        return None  # not a simple-signing layer; cosign ignores these too
    digest = _check_digest(raw.get("digest", ""), f"layer {index} digest")
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_PAYLOAD_SIZE:
        raise SignatureError(f"signature layer {index} has an invalid size {size!r}")
    annotations = raw.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise SignatureError(f"signature layer {index} annotations must map strings to strings")
    encoded = annotations.get(SIGNATURE_ANNOTATION)
    if not encoded:
        raise SignatureError(f"signature layer {index} has no {SIGNATURE_ANNOTATION} annotation")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"signature layer {index}: signature is not base64") from exc
    return SignatureLayer(digest, size, signature, dict(annotations))


def parse_signature_manifest(data: bytes) -> tuple[SignatureLayer, ...]:
    """The simple-signing layers of a cosign signature manifest, in manifest order."""
    if len(data) > MAX_SIGNATURE_MANIFEST_SIZE:
        raise SignatureError(f"signature manifest is {len(data)} bytes, over the limit")
    doc = _strict_json(data, "signature manifest")
    if doc.get("schemaVersion") != 2:
        raise SignatureError("signature manifest: schemaVersion must be 2")
    media_type = doc.get("mediaType", "application/vnd.oci.image.manifest.v1+json")
    if media_type not in _MANIFEST_MEDIA_TYPES:
        raise SignatureError(f"signature manifest has media type {media_type!r}")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise SignatureError("signature manifest: 'layers' must be a list")
    if len(raw_layers) > MAX_SIGNATURE_LAYERS:
        raise SignatureError(f"signature manifest has {len(raw_layers)} layers, over the limit")
    layers = [_layer(raw, i) for i, raw in enumerate(raw_layers)]
    return tuple(layer for layer in layers if layer is not None)


def verify_signature_layer(
    layer: SignatureLayer,
    payload: bytes,
    key: ec.EllipticCurvePublicKey,
    expected_digest: str,
    expected_reference: str | None = None,
) -> SimpleSigningPayload:
    """Verify one signature layer against its fetched payload bytes; return the claims."""
    if len(payload) != layer.size:
        raise SignatureError(f"payload is {len(payload)} bytes, the layer says {layer.size}")
    actual = "sha256:" + hashlib.sha256(payload).hexdigest()
    if actual != layer.digest:
        raise SignatureError(f"payload digest {actual} does not match the layer {layer.digest}")
    try:
        key.verify(layer.signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureError("the signature does not verify with the trusted key") from exc
    claims = parse_payload(payload)
    if claims.manifest_digest != expected_digest:
        raise SignatureError(
            f"the payload signs {claims.manifest_digest}, not the expected {expected_digest}"
        )
    if expected_reference is not None and claims.docker_reference != expected_reference:
        raise SignatureError(
            f"the payload names {claims.docker_reference!r}, not {expected_reference!r}"
        )
    return claims


def verify_signatures(
    manifest: bytes,
    payloads: Mapping[str, bytes],
    expected_digest: str,
    public_key: bytes | ec.EllipticCurvePublicKey,
    expected_reference: str | None = None,
) -> VerifiedSignature:
    """Accept the image if any signature layer of ``manifest`` verifies; else raise.

    ``payloads`` maps a layer digest to the bytes fetched for it (layers without
    fetched bytes count as failures). ``public_key`` is a PEM or a loaded key.
    """
    _check_digest(expected_digest, "expected manifest digest")
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        key = public_key
    else:
        key = load_public_key(public_key)
    layers = parse_signature_manifest(manifest)
    if not layers:
        raise SignatureError("the signature manifest holds no simple-signing signatures")
    failures: list[str] = []
    for layer in layers:
        payload = payloads.get(layer.digest)
        if payload is None:
            failures.append(f"{layer.digest}: payload not fetched")
            continue
        try:
            claims = verify_signature_layer(
                layer, payload, key, expected_digest, expected_reference
            )
        except SignatureError as exc:
            failures.append(f"{layer.digest}: {exc}")
            continue
        return VerifiedSignature(layer.digest, claims)
    raise SignatureError(
        f"no valid signature for {expected_digest} among {len(layers)}: " + "; ".join(failures)
    )
