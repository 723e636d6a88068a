"""Sign an image in a registry the way ``cosign sign --key`` does (classic format).

Reads the existing ``sha256-<hex>.sig`` manifest, if any; if it already holds a
signature of the same payload that verifies with our key, does nothing (cosign's
duplicate detection); otherwise appends one layer with our signature, keeping the
others (signatures by other keys, cosign's own annotations) untouched, and pushes
payload, config and manifest. Two signers appending at the same moment can lose one
signature (last write wins), as with cosign; sign from one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.clients import registry as registry_client
from edgefleet.domain import oci, signing

__all__ = ["SignResult", "sign_and_push"]


@dataclass(frozen=True)
class SignResult:
    """Where a signature lives and whether this call added it."""

    tag: str
    manifest_digest: str  # digest of the signature manifest now at ``tag``
    payload_digest: str  # the layer that holds our payload
    signatures: int  # signature layers in the manifest
    appended: bool  # False when an equivalent signature was already there


def sign_and_push(
    registry: registry_client.RegistryClient,
    repo: str,
    digest: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    reference: str | None = None,
    optional: Mapping[str, Any] | None = None,
) -> SignResult:
    """Sign manifest/index ``digest`` of ``repo`` and push the signature.

    ``reference`` is the docker-reference claimed in the payload; cosign's default
    (``host:port/repo`` of this registry) when not given.
    """
    tag = signing.signature_tag(digest)
    payload = signing.build_payload(reference or f"{registry.host}/{repo}", digest, optional)
    payload_digest = oci.sha256_digest(payload)
    existing: tuple[oci.Descriptor, ...] = ()
    current = registry.head_manifest(repo, tag)
    if current is not None:
        data, media_type, current_digest = registry.get_manifest(repo, current.digest)
        existing = signing.signature_layers(data, media_type)
        if any(signing.is_duplicate(d, payload, key.public_key()) for d in existing):
            return SignResult(tag, current_digest, payload_digest, len(existing), appended=False)
    layer = signing.signature_layer(payload, signing.sign_payload(key, payload))
    image = signing.signature_image([*existing, layer])
    registry.push_blob(repo, oci.Blob(payload, layer.media_type))
    registry.push_blob(repo, image.config)
    manifest_digest = registry.put_manifest(repo, tag, image.manifest)
    return SignResult(tag, manifest_digest, payload_digest, len(image.layers), appended=True)
