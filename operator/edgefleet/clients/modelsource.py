"""Fetching model weights: an HTTP(S) URL pinned by sha256, or an OCI artifact.

Downloads stream to a temporary file while hashing, stop at a size limit, and are
kept in a content-addressed cache (``<cache>/<sha256>``) only once the hash matched,
so a mismatching download is never used and a repeated build downloads nothing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from edgefleet.api.inferencemodel import ModelSource
from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.registry_errors import RegistryError
from edgefleet.domain import oci

__all__ = [
    "DEFAULT_MAX_MODEL_BYTES",
    "ModelSourceError",
    "SourceDigestMismatchError",
    "fetch_model",
]

DEFAULT_MAX_MODEL_BYTES = 2 * 1024**3
_CHUNK = 1024 * 1024


class ModelSourceError(RuntimeError):
    """The weights could not be fetched; the message says from where and why."""


class SourceDigestMismatchError(ModelSourceError):
    """The weights were fetched but their sha256 is not the pinned one."""


def _cached(cache_dir: Path, sha256: str) -> bytes | None:
    path = cache_dir / sha256
    if path.is_file():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == sha256:
            return data
        path.unlink()  # a damaged cache entry is dropped, never used
    return None


def _store(cache_dir: Path, sha256: str, data: bytes) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".part-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, cache_dir / sha256)


def _download(url: str, expected: str, max_bytes: int, client: httpx.Client) -> bytes:
    digest, chunks, size = hashlib.sha256(), [], 0
    try:
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise ModelSourceError(f"GET {url} answered HTTP {response.status_code}")
            for chunk in response.iter_bytes(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ModelSourceError(f"{url} is larger than the limit of {max_bytes} bytes")
                digest.update(chunk)
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ModelSourceError(f"cannot download {url}: {exc}") from exc
    got = digest.hexdigest()
    if got != expected:
        raise SourceDigestMismatchError(
            f"{url} has sha256 {got}, but spec.source.url.sha256 pins {expected}; "
            "fix the pin or the file"
        )
    return b"".join(chunks)


def _split_reference(reference: str) -> tuple[str, str, str]:
    name, _, digest = reference.partition("@")
    host, _, repo = name.partition("/")
    return host, repo, digest


def _from_oci(
    reference: str,
    layer_media_type: str | None,
    registry_for: Callable[[str], RegistryClient],
    max_bytes: int,
) -> tuple[bytes, str]:
    host, repo, digest = _split_reference(reference)
    registry = registry_for(host)
    try:
        data, media_type, _ = registry.get_manifest(repo, digest)
        manifest = oci.parse_manifest(data, media_type, expected_digest=digest)
        layers = [
            d
            for d in manifest.layers
            if layer_media_type is None or d.media_type == layer_media_type
        ]
        if not layers:
            wanted = layer_media_type or "any"
            raise ModelSourceError(f"{reference} has no layer of media type {wanted}")
        if layers[0].size > max_bytes:
            raise ModelSourceError(f"{reference}: model layer is larger than {max_bytes} bytes")
        blob = registry.get_blob(repo, layers[0].digest, max_size=max_bytes)
    except (RegistryError, oci.OCIError) as exc:
        raise ModelSourceError(f"cannot fetch {reference}: {exc}") from exc
    return blob, hashlib.sha256(blob).hexdigest()


def fetch_model(
    source: ModelSource,
    cache_dir: Path,
    *,
    http: httpx.Client,
    registry_for: Callable[[str], RegistryClient],
    max_bytes: int = DEFAULT_MAX_MODEL_BYTES,
) -> tuple[bytes, str]:
    """The weights and their hex sha256, from the cache when possible."""
    if source.url is not None:
        expected = source.url.sha256
        cached = _cached(cache_dir, expected)
        if cached is not None:
            return cached, expected
        data = _download(source.url.url, expected, max_bytes, http)
        _store(cache_dir, expected, data)
        return data, expected
    assert source.oci is not None  # the model guarantees exactly one source
    data, sha = _from_oci(
        source.oci.reference, source.oci.layer_media_type, registry_for, max_bytes
    )
    _store(cache_dir, sha, data)
    return data, sha
