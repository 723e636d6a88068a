"""Fetching model weights: an HTTP(S) URL pinned by sha256, or an OCI artifact.

Downloads stream to a temporary file in the cache directory while hashing (1 MiB
pieces, never the whole model in memory), stop at a size limit, and are renamed to
``<cache>/<sha256>`` only once the hash matched, so a mismatching download is never
used and a repeated build downloads nothing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from edgefleet.api.conditions import Reason
from edgefleet.api.inferencemodel_parts import ModelSource
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import oci
from edgefleet.domain.failures import FailureError

__all__ = [
    "DEFAULT_MAX_MODEL_BYTES",
    "ModelFile",
    "ModelSourceError",
    "SourceDigestMismatchError",
    "fetch_model",
    "file_sha256",
]

DEFAULT_MAX_MODEL_BYTES = 2 * 1024**3
_CHUNK = 1024 * 1024


class ModelSourceError(FailureError):
    """The weights could not be fetched; the message says from where and why.

    Temporary by default (a server that is down); ``permanent=True`` when no retry
    can help (a source the operator may not use, a file over the size limit).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(Reason.SOURCE_UNAVAILABLE, message, permanent=permanent)


class SourceDigestMismatchError(FailureError):
    """The weights were fetched but their sha256 is not the pinned one."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.SOURCE_DIGEST_MISMATCH, message, permanent=True)


@dataclass(frozen=True)
class ModelFile:
    """Verified weights on disk."""

    path: Path
    sha256: str  # hex
    size: int

    def read_bytes(self) -> bytes:
        """The whole file (only for optimisations, which need the model in memory)."""
        return self.path.read_bytes()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _cached(cache_dir: Path, sha256: str) -> ModelFile | None:
    path = cache_dir / sha256
    if path.is_file():
        if file_sha256(path) == sha256:
            return ModelFile(path, sha256, path.stat().st_size)
        path.unlink()  # a damaged cache entry is dropped, never used
    return None


def _download(
    url: str, expected: str, max_bytes: int, client: httpx.Client, cache: Path
) -> ModelFile:
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".part-")
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with client.stream("GET", url) as response:
                    if response.status_code != 200:
                        raise ModelSourceError(
                            f"GET {url} answered HTTP {response.status_code}",
                            permanent=response.status_code in (401, 403, 410),
                        )
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise ModelSourceError(
                                f"{url} is larger than the limit of {max_bytes} bytes",
                                permanent=True,
                            )
                        digest.update(chunk)
                        out.write(chunk)
            except httpx.HTTPError as exc:
                raise ModelSourceError(f"cannot download {url}: {exc}") from exc
            got = digest.hexdigest()
            if got != expected:
                raise SourceDigestMismatchError(
                    f"{url} has sha256 {got}, but spec.source.url.sha256 pins {expected}; "
                    "fix the pin or the file"
                )
            out.flush()
            os.fsync(out.fileno())
        final = cache / expected
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ModelFile(final, expected, size)


def _split_reference(reference: str) -> tuple[str, str, str]:
    name, _, digest = reference.partition("@")
    host, _, repo = name.partition("/")
    return host, repo, digest


def _from_oci(
    reference: str,
    layer_media_type: str | None,
    registry_for: Callable[[str], RegistryClient],
    max_bytes: int,
    cache: Path,
) -> ModelFile:
    host, repo, digest = _split_reference(reference)
    registry = registry_for(host)
    data, media_type, _ = registry.get_manifest(repo, digest)
    manifest = oci.parse_manifest(data, media_type, expected_digest=digest)
    layers = [
        d for d in manifest.layers if layer_media_type is None or d.media_type == layer_media_type
    ]
    if not layers:
        wanted = layer_media_type or "any"
        raise ModelSourceError(f"{reference} has no layer of media type {wanted}", permanent=True)
    if layers[0].size > max_bytes:
        raise ModelSourceError(
            f"{reference}: model layer is larger than {max_bytes} bytes", permanent=True
        )
    sha = layers[0].digest.removeprefix("sha256:")
    cached = _cached(cache, sha)
    if cached is not None:
        return cached
    size = registry.download_blob(repo, layers[0].digest, cache / sha, max_size=max_bytes)
    return ModelFile(cache / sha, sha, size)


def fetch_model(
    source: ModelSource,
    cache_dir: Path,
    *,
    http: httpx.Client,
    registry_for: Callable[[str], RegistryClient],
    max_bytes: int = DEFAULT_MAX_MODEL_BYTES,
) -> ModelFile:
    """The weights as a verified file, from the cache when possible.

    Registry and OCI errors of an OCI source propagate as they are, so the one
    failure mapping types them (a 401 stays permanent, a 503 temporary).
    """
    if source.url is not None:
        expected = source.url.sha256
        cached = _cached(cache_dir, expected)
        if cached is not None:
            return cached
        return _download(source.url.url, expected, max_bytes, http, cache_dir)
    assert source.oci is not None  # the model guarantees exactly one source
    return _from_oci(
        source.oci.reference, source.oci.layer_media_type, registry_for, max_bytes, cache_dir
    )
