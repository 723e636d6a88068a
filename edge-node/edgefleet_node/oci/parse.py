"""Validating parsers for image manifests, indexes and configs.

Every document read from a registry or a file goes through here: size limits first,
then the digest (when the caller knows it), strict JSON (no duplicate keys), media
types (OCI, plus Docker schema2 when reading), schema version and descriptor shapes.
Anything else raises :class:`~edgefleet_node.oci.types.OCIError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgefleet_node import strictjson
from edgefleet_node.oci import types as oci_types
from edgefleet_node.oci.types import OCIError

__all__ = [
    "MAX_CONFIG_SIZE",
    "MAX_MANIFEST_SIZE",
    "ImageConfig",
    "ImageIndex",
    "ImageManifest",
    "parse_config",
    "parse_image_document",
    "parse_index",
    "parse_manifest",
]

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_CONFIG_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class ImageConfig:
    """A parsed image config; ``document`` is the whole JSON object."""

    platform: oci_types.Platform
    diff_ids: tuple[str, ...]
    document: Mapping[str, Any]
    digest: str


@dataclass(frozen=True)
class ImageManifest:
    """A parsed single-platform image manifest."""

    media_type: str
    config: oci_types.Descriptor
    layers: tuple[oci_types.Descriptor, ...]
    annotations: Mapping[str, str]
    digest: str
    size: int

    def require_image(self) -> None:
        """Raise unless this is a container image (image config, tar layers)."""
        if self.config.media_type not in (oci_types.OCI_CONFIG, oci_types.DOCKER_CONFIG):
            raise OCIError(f"manifest {self.digest} has config type {self.config.media_type}")
        for layer in self.layers:
            if layer.media_type not in oci_types.LAYER_MEDIA_TYPES:
                raise OCIError(f"manifest {self.digest} has a layer of type {layer.media_type}")


@dataclass(frozen=True)
class ImageIndex:
    """A parsed image index (or Docker manifest list)."""

    media_type: str
    manifests: tuple[oci_types.Descriptor, ...]
    annotations: Mapping[str, str]
    digest: str

    def find(self, platform: oci_types.Platform) -> oci_types.Descriptor:
        """The manifest for ``platform`` (arm64 without variant equals arm64/v8)."""

        def key(p: oci_types.Platform) -> tuple[str, str, str]:
            v8 = p.architecture == "arm64" and p.variant == "v8"
            return p.os, p.architecture, "" if v8 else p.variant

        for desc in self.manifests:
            if desc.platform is not None and key(desc.platform) == key(platform):
                return desc
        raise OCIError(f"index {self.digest} has no manifest for {platform}")


def _load(data: bytes, what: str, limit: int, expected_digest: str | None) -> dict[str, Any]:
    if len(data) > limit:
        raise OCIError(f"{what} is {len(data)} bytes, over the {limit}-byte limit")
    if expected_digest is not None:
        actual = oci_types.sha256_digest(data)
        if actual != oci_types.check_digest(expected_digest, "expected digest"):
            raise OCIError(f"{what} has digest {actual}, expected {expected_digest}")
    return strictjson.loads_object(data, what, OCIError)


def _document_type(doc: Mapping[str, Any], media_type: str | None, allowed: frozenset[str]) -> str:
    body_type = doc.get("mediaType")
    if media_type is not None and body_type is not None and body_type != media_type:
        raise OCIError(f"document says mediaType {body_type!r} but was served as {media_type!r}")
    found = body_type or media_type
    if found not in allowed:
        raise OCIError(f"media type {found!r} is not one of {sorted(allowed)}")
    if doc.get("schemaVersion") != 2:
        raise OCIError("schemaVersion must be 2")
    assert isinstance(found, str)
    return found


def _annotations(doc: Mapping[str, Any]) -> dict[str, str]:
    value = doc.get("annotations") or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise OCIError("annotations must map strings to strings")
    return value


def parse_manifest(
    data: bytes, media_type: str | None = None, expected_digest: str | None = None
) -> ImageManifest:
    """Parse an image manifest (OCI or Docker schema2); ``media_type`` as served."""
    doc = _load(data, "manifest", MAX_MANIFEST_SIZE, expected_digest)
    found = _document_type(doc, media_type, oci_types.MANIFEST_MEDIA_TYPES)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise OCIError("manifest 'layers' must be a list")
    return ImageManifest(
        media_type=found,
        config=oci_types.Descriptor.from_json(doc.get("config"), "manifest config"),
        layers=tuple(oci_types.Descriptor.from_json(d, f"layer {i}") for i, d in enumerate(layers)),
        annotations=_annotations(doc),
        digest=oci_types.sha256_digest(data),
        size=len(data),
    )


def parse_index(
    data: bytes, media_type: str | None = None, expected_digest: str | None = None
) -> ImageIndex:
    """Parse an image index (OCI or Docker manifest list)."""
    doc = _load(data, "image index", MAX_MANIFEST_SIZE, expected_digest)
    found = _document_type(doc, media_type, oci_types.INDEX_MEDIA_TYPES)
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise OCIError("index 'manifests' must be a list")
    descs = tuple(
        oci_types.Descriptor.from_json(d, f"manifest {i}") for i, d in enumerate(manifests)
    )
    return ImageIndex(found, descs, _annotations(doc), oci_types.sha256_digest(data))


def parse_image_document(
    data: bytes, media_type: str, expected_digest: str | None = None
) -> ImageManifest | ImageIndex:
    """Parse a manifest or an index, chosen by the media type it was served with."""
    if media_type in oci_types.INDEX_MEDIA_TYPES:
        return parse_index(data, media_type, expected_digest)
    return parse_manifest(data, media_type, expected_digest)


def parse_config(data: bytes, expected_digest: str | None = None) -> ImageConfig:
    """Parse an image config: platform, ``rootfs.diff_ids`` and the whole document."""
    doc = _load(data, "image config", MAX_CONFIG_SIZE, expected_digest)
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise OCIError("image config rootfs must be an object of type 'layers'")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise OCIError("image config rootfs.diff_ids must be a list")
    ids = tuple(oci_types.check_digest(d, "diff ID") for d in diff_ids)
    config = doc.get("config", {})
    if config is not None and not isinstance(config, dict):
        raise OCIError("image config 'config' must be an object")
    history = doc.get("history", [])
    if history is not None and not isinstance(history, list):
        raise OCIError("image config 'history' must be a list")
    platform = oci_types.Platform.from_json(doc)
    return ImageConfig(platform, ids, doc, oci_types.sha256_digest(data))
