"""Value types and name checks of the registry client.

:class:`TransferStats` (what a client sent and skipped), :class:`PushOutcome`, and the
distribution spec's grammar for repository names and references, checked before a
name is put into a URL.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol

from edgefleet.clients.registry_errors import RegistryError
from edgefleet.domain import oci

__all__ = [
    "FileBlob",
    "HashingFile",
    "PushOutcome",
    "Sink",
    "TransferStats",
    "blob_path",
    "check_reference",
    "check_repo",
    "manifest_path",
    "scopes",
]

_REPO = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class PushOutcome(StrEnum):
    """What :meth:`RegistryClient.push_blob` had to do."""

    SKIPPED = "skipped"
    MOUNTED = "mounted"
    UPLOADED = "uploaded"


class Sink(Protocol):
    """Where a streamed response body goes; ``reset`` starts it over (on a retry)."""

    def reset(self) -> None: ...

    def write(self, data: bytes) -> object: ...


class HashingFile:
    """A :class:`Sink` writing to an open binary file and hashing on the way."""

    def __init__(self, file: BinaryIO, algorithm: str = "sha256") -> None:
        self._file = file
        self._algorithm = algorithm
        self.hash = hashlib.new(algorithm)
        self.size = 0

    def reset(self) -> None:
        self._file.seek(0)
        self._file.truncate()
        self.hash = hashlib.new(self._algorithm)
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self._file.write(data)

    @property
    def digest(self) -> str:
        return f"{self._algorithm}:{self.hash.hexdigest()}"


@dataclass(frozen=True)
class FileBlob:
    """A blob kept in a file (a model layer of gigabytes), pushed in chunks.

    ``digest`` and ``size`` were computed when the file was written; the registry
    checks the digest again when the upload completes.
    """

    path: Path
    media_type: str
    digest: str
    size: int

    def chunks(self, chunk_size: int) -> Iterator[bytes]:
        with self.path.open("rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def descriptor(
        self, annotations: Mapping[str, str] | None = None, platform: oci.Platform | None = None
    ) -> oci.Descriptor:
        return oci.Descriptor(
            self.media_type, self.digest, self.size, dict(annotations or {}), platform
        )


@dataclass
class TransferStats:
    """Counters of one client's traffic (bytes are payload bytes, not HTTP overhead).

    ``uploaded_digests`` is recorded only by a per-build view
    (:meth:`~edgefleet.clients.registry.RegistryClient.metered`), so nothing grows for
    the life of the process.
    """

    blob_bytes_uploaded: int = 0
    manifest_bytes_uploaded: int = 0
    blobs_uploaded: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    manifests_pushed: int = 0
    bytes_downloaded: int = 0
    uploaded_digests: list[str] = field(default_factory=list)

    @property
    def bytes_uploaded(self) -> int:
        return self.blob_bytes_uploaded + self.manifest_bytes_uploaded


def check_repo(repo: str) -> str:
    """``repo`` if it is a valid repository name, else :class:`RegistryError`."""
    if len(repo) > 255 or _REPO.fullmatch(repo) is None:
        raise RegistryError(
            f"invalid repository name {repo!r}; use a lowercase path like 'models/resnet'",
            code="NAME_INVALID",
        )
    return repo


def check_reference(reference: str) -> str:
    """``reference`` if it is a valid tag or digest, else :class:`RegistryError`."""
    if _TAG.fullmatch(reference) is None:
        try:
            oci.check_digest(reference, "reference")
        except oci.OCIError as exc:
            raise RegistryError(f"{exc} and not a valid tag", code="TAG_INVALID") from exc
    return reference


def scopes(repo: str, push: bool = False, mount_from: str | None = None) -> list[str]:
    """Token scopes for pulling (or pushing) ``repo``, and pulling ``mount_from``."""
    result = [f"repository:{check_repo(repo)}:{'pull,push' if push else 'pull'}"]
    if mount_from is not None:
        result.append(f"repository:{check_repo(mount_from)}:pull")
    return result


def manifest_path(repo: str, reference: str) -> str:
    """The API path of a manifest, after checking both names."""
    return f"v2/{check_repo(repo)}/manifests/{check_reference(reference)}"


def blob_path(repo: str, digest: str) -> str:
    """The API path of a blob, after checking both names."""
    return f"v2/{check_repo(repo)}/blobs/{oci.check_digest(digest)}"
