"""cosign-format image signatures (key-based, classic ``sha256-<hex>.sig`` tag), pure.

Builds what ``cosign sign --key`` writes: the simple-signing payload, an ECDSA P-256 /
SHA-256 DER signature (base64 in the layer annotation
``dev.cosignproject.cosign/signature``) and the signature manifest with one
``application/vnd.dev.cosign.simplesigning.v1+json`` layer per signature and a config
shaped like the one go-containerregistry's ``empty.Image`` + ``mutate.Append`` gives.
Both documents are serialised in Go's field order, so for the same layers our bytes
equal cosign's. Verification lives in :mod:`edgefleet_node.trust.cosign`, shared with
the agent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.domain import oci
from edgefleet_node.trust import cosign

__all__ = [
    "SignatureImage",
    "SigningKeyError",
    "build_payload",
    "generate_key",
    "is_duplicate",
    "load_private_key",
    "load_public_key",
    "private_key_pem",
    "public_key_pem",
    "sign_payload",
    "signature_image",
    "signature_layer",
    "signature_layers",
    "signature_tag",
]

_GO_ZERO_TIME = "0001-01-01T00:00:00Z"
signature_tag = cosign.signature_tag
load_public_key = cosign.load_public_key


class SigningKeyError(ValueError):
    """A signing key cannot be loaded or is not an ECDSA P-256 key."""


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 signing key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted when a password is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def public_key_pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM, the format of ``cosign.pub``."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load a PKCS#8 (or SEC1) PEM P-256 private key."""
    if b"SIGSTORE PRIVATE KEY" in pem:
        raise SigningKeyError(
            "this is a cosign-encrypted key (cosign.key); export it as PKCS#8 PEM, or "
            "generate the key with edgefleet and run `cosign import-key-pair` for cosign"
        )
    try:
        key = serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot load the signing key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError("the signing key must be an ECDSA P-256 key")
    return key


def build_payload(reference: str, digest: str, optional: Mapping[str, Any] | None = None) -> bytes:
    """The simple-signing payload cosign signs, byte-for-byte as cosign writes it.

    ``reference`` is the repository as cosign names it (``host:port/repo``), ``digest``
    the signed manifest or index digest.
    """
    oci.check_digest(digest, "signed digest")
    doc = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": cosign.COSIGN_SIGNATURE_TYPE,
        },
        "optional": dict(optional) if optional else None,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_payload(key: ec.EllipticCurvePrivateKey, payload: bytes) -> bytes:
    """ECDSA P-256 / SHA-256 signature over ``payload``, DER-encoded."""
    return key.sign(payload, ec.ECDSA(hashes.SHA256()))


def signature_layer(
    payload: bytes, signature: bytes, annotations: Mapping[str, str] | None = None
) -> oci.Descriptor:
    """The manifest layer descriptor of one signature (payload is the layer blob)."""
    blob = oci.Blob(payload, cosign.SIMPLE_SIGNING_MEDIA_TYPE)
    notes = {
        **(annotations or {}),
        cosign.SIGNATURE_ANNOTATION: base64.b64encode(signature).decode(),
    }
    return blob.descriptor(annotations=notes)


def is_duplicate(
    layer: oci.Descriptor, payload: bytes, public_key: ec.EllipticCurvePublicKey
) -> bool:
    """cosign's duplicate test: same payload, and its signature verifies with our key."""
    if layer.media_type != cosign.SIMPLE_SIGNING_MEDIA_TYPE:
        return False
    if layer.digest != oci.sha256_digest(payload):
        return False
    try:
        signature = base64.b64decode(layer.annotations.get(cosign.SIGNATURE_ANNOTATION, ""))
        public_key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class SignatureImage:
    """A signature manifest and its config, ready to push."""

    config: oci.Blob
    manifest: oci.Blob
    layers: tuple[oci.Descriptor, ...]


def _go_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _go_descriptor(desc: oci.Descriptor) -> dict[str, Any]:
    doc: dict[str, Any] = {"mediaType": desc.media_type, "size": desc.size, "digest": desc.digest}
    if desc.annotations:
        doc["annotations"] = dict(sorted(desc.annotations.items()))
    return doc


def signature_image(layers: Sequence[oci.Descriptor]) -> SignatureImage:
    """The signature manifest holding ``layers`` (in order), with its config."""
    if not layers:
        raise oci.OCIError("a signature manifest needs at least one signature layer")
    if len(layers) > cosign.MAX_SIGNATURE_LAYERS:
        raise oci.OCIError(f"a signature manifest holds at most {cosign.MAX_SIGNATURE_LAYERS}")
    config = {
        "architecture": "",
        "created": _GO_ZERO_TIME,
        "history": [{"created": _GO_ZERO_TIME} for _ in layers],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        "config": {},
    }
    config_blob = oci.Blob(_go_json(config), oci.OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "config": _go_descriptor(config_blob.descriptor()),
        "layers": [_go_descriptor(layer) for layer in layers],
    }
    return SignatureImage(
        config_blob, oci.Blob(_go_json(manifest), oci.OCI_MANIFEST), tuple(layers)
    )


def signature_layers(manifest: bytes, media_type: str | None = None) -> tuple[oci.Descriptor, ...]:
    """All layers of an existing signature manifest, to append a new signature to."""
    return oci.parse_manifest(manifest, media_type).layers
