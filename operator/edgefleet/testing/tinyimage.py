"""Small signed multi-platform images for gateway tests and benchmarks.

:func:`push_image` builds an image index over one tiny real image per platform (a
tar+gzip layer holding a text file, plus an optional layer of random bytes of a given
size, for throughput), pushes it to a registry, signs the index and every platform
manifest in the cosign format, and returns every digest involved, so a test can say
what a device assigned this image may and may not fetch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.signer import sign_and_push
from edgefleet.domain import oci

__all__ = ["PushedImage", "push_image"]


@dataclass(frozen=True)
class PushedImage:
    repository: str
    index_digest: str
    manifests: dict[str, str]  # platform -> manifest digest
    blobs: dict[str, tuple[str, ...]]  # platform -> config and layer digests
    signatures: dict[str, str]  # signed digest -> signature manifest digest
    big_layer: str | None  # digest of the random layer, when asked for

    def every_digest(self, platform: str) -> set[str]:
        """What a device of ``platform`` assigned this image may fetch (signature payload
        layers aside)."""
        manifest = self.manifests[platform]
        return {
            self.index_digest,
            manifest,
            *self.blobs[platform],
            self.signatures[self.index_digest],
            self.signatures[manifest],
        }


def push_image(
    registry: RegistryClient,
    repository: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    big_layer_bytes: int = 0,
    text: str = "hello from edgefleet",
) -> PushedImage:
    big: oci.Layer | None = None
    if big_layer_bytes:
        big = oci.build_layer(
            [oci.FileEntry.file("data/blob.bin", os.urandom(big_layer_bytes))], compresslevel=0
        )
        registry.push_blob(repository, big.blob)
    manifests: dict[str, str] = {}
    blobs: dict[str, tuple[str, ...]] = {}
    entries = []
    for name in platforms:
        platform = oci.Platform.parse(name)
        layer = oci.build_layer([oci.FileEntry.file("hello.txt", f"{text} {name}\n".encode())])
        layers = [layer, big] if big is not None else [layer]
        config = oci.image_config(
            platform, [item.diff_id for item in layers], cmd=["/bin/true"], labels={"t": text}
        )
        for item in layers:
            registry.push_blob(repository, item.blob)
        registry.push_blob(repository, config)
        manifest = oci.image_manifest(config, layers)
        manifests[name] = registry.put_manifest(repository, manifest.digest, manifest)
        blobs[name] = (config.digest, *(item.blob.digest for item in layers))
        entries.append((manifest.descriptor(), platform))
    index = oci.image_index(entries)
    index_digest = registry.put_manifest(repository, "latest", index)
    signatures = {
        digest: sign_and_push(registry, repository, digest, key).manifest_digest
        for digest in (index_digest, *manifests.values())
    }
    return PushedImage(
        repository,
        index_digest,
        manifests,
        blobs,
        signatures,
        big.blob.digest if big is not None else None,
    )
