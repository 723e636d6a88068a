"""OCI building blocks: media types, digests, platforms, descriptors and blobs.

Pure data types shared by the operator's image assembly (``edgefleet.domain.oci_*``)
and the agent, which reads what it pulls with them. Everything we write uses OCI media
types; the Docker v2 schema2 ones are accepted when reading.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_MEDIA_TYPES",
    "LAYER_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_TAR",
    "OCI_MANIFEST",
    "Blob",
    "Descriptor",
    "OCIError",
    "Platform",
    "canonical_json",
    "check_digest",
    "sha256_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
LAYER_MEDIA_TYPES = frozenset({OCI_LAYER_GZIP, OCI_LAYER_TAR, DOCKER_LAYER_GZIP})

_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
_PLATFORM_PART = re.compile(r"[a-z0-9][a-z0-9._-]*")
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
MAX_DESCRIBED_SIZE = 64 * 1024**3  # no single blob we handle is anywhere near 64 GiB


class OCIError(ValueError):
    """An OCI document or value is malformed, inconsistent, or not what was expected."""


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(value: object, what: str = "digest") -> str:
    """Return ``value`` if it is a well-formed sha256/sha512 digest, else raise."""
    if not isinstance(value, str) or _DIGEST.fullmatch(value) is None:
        raise OCIError(f"{what} {value!r} is not a digest like sha256:<64 lowercase hex>")
    return value


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, order=True)
class Platform:
    """An OS/architecture pair with an optional CPU variant, e.g. ``linux/arm/v7``."""

    os: str
    architecture: str
    variant: str = ""

    def __post_init__(self) -> None:
        for part in (self.os, self.architecture):
            if _PLATFORM_PART.fullmatch(part) is None:
                raise OCIError(f"invalid platform component {part!r}")
        if self.variant and _PLATFORM_PART.fullmatch(self.variant) is None:
            raise OCIError(f"invalid platform variant {self.variant!r}")

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch`` or ``os/arch/variant``."""
        parts = text.split("/")
        if len(parts) not in (2, 3):
            raise OCIError(f"platform {text!r} is not os/arch or os/arch/variant")
        return cls(*parts)

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    def to_json(self) -> dict[str, str]:
        doc = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            doc["variant"] = self.variant
        return doc

    @classmethod
    def from_json(cls, doc: object) -> Platform:
        if not isinstance(doc, dict):
            raise OCIError("platform must be a JSON object")
        os_, arch, variant = doc.get("os"), doc.get("architecture"), doc.get("variant", "")
        if not isinstance(os_, str) or not isinstance(arch, str) or not isinstance(variant, str):
            raise OCIError("platform os, architecture and variant must be strings")
        return cls(os_, arch, variant)


def _string_map(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise OCIError(f"{what} must map strings to strings")
    return dict(value)


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    platform: Platform | None = None

    def __post_init__(self) -> None:
        if _MEDIA_TYPE.fullmatch(self.media_type) is None:
            raise OCIError(f"invalid media type {self.media_type!r}")
        check_digest(self.digest)
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise OCIError(f"descriptor size {self.size!r} is not an integer")
        if not 0 <= self.size <= MAX_DESCRIBED_SIZE:
            raise OCIError(f"descriptor size {self.size} is out of range")

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        if self.platform is not None:
            doc["platform"] = self.platform.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: object, what: str = "descriptor") -> Descriptor:
        if not isinstance(doc, dict):
            raise OCIError(f"{what} must be a JSON object")
        media_type = doc.get("mediaType")
        if not isinstance(media_type, str):
            raise OCIError(f"{what} has no mediaType")
        annotations = _string_map(doc.get("annotations") or {}, f"{what} annotations")
        platform = Platform.from_json(doc["platform"]) if "platform" in doc else None
        digest, size = doc.get("digest"), doc.get("size")
        if not isinstance(size, int):
            raise OCIError(f"{what}: size {size!r} is not an integer")
        try:
            return cls(media_type, check_digest(digest), size, annotations, platform)
        except OCIError as exc:
            raise OCIError(f"{what}: {exc}") from exc


@dataclass(frozen=True)
class Blob:
    """Bytes with a media type; ``digest`` and ``size`` are computed once."""

    data: bytes = field(repr=False)
    media_type: str
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", sha256_digest(self.data))

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(
        self, annotations: Mapping[str, str] | None = None, platform: Platform | None = None
    ) -> Descriptor:
        return Descriptor(
            self.media_type, self.digest, self.size, dict(annotations or {}), platform
        )
