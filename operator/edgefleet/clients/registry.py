"""A client for the OCI distribution API (push, pull, mount, tags) over httpx.

The only code that talks to OCI registries. Blobs are pushed only when the registry
does not have them (HEAD first), mounted from another repository when one is named,
otherwise uploaded in one PUT or, when large, in PATCH chunks; the digests the
registry reports are checked. Everything read is size-bounded and digest-verified.
:class:`TransferStats` counts bytes uploaded and blobs skipped or mounted, so
callers (and tests) can prove that a weights-only rebuild sent only the new layer.
Counters of concurrent work stay apart: :meth:`RegistryClient.metered` gives a view
with its own counters (one per build) over the same connections.

Large blobs never sit in memory: :class:`FileBlob` uploads stream from a file in
chunks, and :meth:`RegistryClient.download_blob` streams to a file while hashing.
This module holds the client, its counters and the blob operations; the manifest and
tag methods come from the :class:`~edgefleet.clients.registry_manifests.ManifestOps`
mixin (``DEFAULT_ACCEPT`` is re-exported from there, as before).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import httpx

from edgefleet.clients import registry_blobs, registry_model, registry_transport
from edgefleet.clients.registry_blobs import AnyBlob
from edgefleet.clients.registry_errors import (
    BlobTooLargeError,
    DigestMismatchError,
    RegistryAuthError,
    RegistryError,
)
from edgefleet.clients.registry_manifests import DEFAULT_ACCEPT, ManifestOps
from edgefleet.clients.registry_model import FileBlob, PushOutcome, TransferStats
from edgefleet.domain import oci

__all__ = [
    "DEFAULT_ACCEPT",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_BLOB_SIZE",
    "BlobTooLargeError",
    "DigestMismatchError",
    "FileBlob",
    "PushOutcome",
    "RegistryAuthError",
    "RegistryClient",
    "RegistryError",
    "TransferStats",
]

DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_BLOB_SIZE = 8 * 1024**3


class RegistryClient(ManifestOps):
    """A synchronous OCI distribution client for one registry; thread-safe."""

    def __init__(
        self,
        base_url: str,
        *,
        ca_bundle: str | Path | None = None,
        username: str | None = None,
        password: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._transport = registry_transport.RegistryTransport(
            base_url,
            ca_bundle=ca_bundle,
            username=username,
            password=password,
            transport=transport,
            timeout=timeout,
            retries=retries,
            sleep=sleep,
        )
        self._call = self._transport.call
        self._chunk_size = chunk_size
        self._lock = threading.Lock()
        self.stats = TransferStats()
        self._parent: RegistryClient | None = None
        self._record_digests = False

    def metered(self) -> RegistryClient:
        """A view over the same connections with its own counters (one per build).

        Its traffic also adds to this client's counters; only the view records the
        digests it uploaded. Closing the view leaves the connections open.
        """
        view = object.__new__(RegistryClient)
        view._transport = self._transport
        view._call = self._transport.call
        view._chunk_size = self._chunk_size
        view._lock = threading.Lock()
        view.stats = TransferStats()
        view._parent = self
        view._record_digests = True
        return view

    def __repr__(self) -> str:
        return f"RegistryClient({str(self._transport.base)!r})"

    @property
    def host(self) -> str:
        """``host[:port]`` of the registry, as used in image references."""
        base = self._transport.base
        return f"{base.host}:{base.port}" if base.port else base.host

    def snapshot(self) -> TransferStats:
        """A copy of the counters, to compare before and after an operation."""
        with self._lock:
            return replace(self.stats, uploaded_digests=list(self.stats.uploaded_digests))

    def close(self) -> None:
        if self._parent is None:
            self._transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)
        if self._parent is not None:
            self._parent._count(**increments)

    def _uploaded(self, digest: str) -> None:
        if self._record_digests:
            with self._lock:
                self.stats.uploaded_digests.append(digest)
        self._count(blobs_uploaded=1)

    # -- blobs -------------------------------------------------------------------

    def _head_blob(self, repo: str, digest: str, scopes: Sequence[str]) -> bool:
        response, _ = self._call(
            "HEAD",
            registry_model.blob_path(repo, digest),
            scopes=scopes,
            operation=f"HEAD blob {repo}@{digest}",
            ok=(200, 404),
        )
        return response.status_code == 200

    def has_blob(self, repo: str, digest: str) -> bool:
        """Whether ``repo`` has the blob ``digest``."""
        return self._head_blob(repo, digest, registry_model.scopes(repo))

    def _start_upload(
        self, repo: str, digest: str, mount_from: str | None, operation: str
    ) -> tuple[httpx.Response | None, list[str]]:
        """Open an upload session, trying a mount first; (None, scopes) when mounted."""
        scopes = registry_model.scopes(repo, push=True, mount_from=mount_from)
        params = {}
        if mount_from is not None:
            params = {
                "mount": oci.check_digest(digest),
                "from": registry_model.check_repo(mount_from),
            }
        response, _ = self._call(
            "POST",
            f"v2/{registry_model.check_repo(repo)}/blobs/uploads/",
            scopes=scopes,
            operation=operation,
            ok=(201, 202) if mount_from else (202,),
            params=params,
            headers={"Content-Length": "0"},
        )
        if response.status_code == 201:
            self._check_reported(response, digest, operation)
            self._count(blobs_mounted=1)
            return None, scopes
        return response, scopes

    def push_blob(self, repo: str, blob: AnyBlob, mount_from: str | None = None) -> PushOutcome:
        """Make ``repo`` hold ``blob``: skip if present, else mount or upload it."""
        mount_from = None if mount_from == repo else mount_from
        operation = f"push blob {repo}@{blob.digest}"
        # One scope set for the HEAD and the upload: one token under Bearer auth.
        scopes = registry_model.scopes(repo, push=True, mount_from=mount_from)
        if self._head_blob(repo, blob.digest, scopes):
            self._count(blobs_skipped=1)
            return PushOutcome.SKIPPED
        session, scopes = self._start_upload(repo, blob.digest, mount_from, operation)
        if session is None:
            return PushOutcome.MOUNTED
        self._upload(session, blob, scopes, operation)
        self._uploaded(blob.digest)
        return PushOutcome.UPLOADED

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repo mount of ``digest`` from ``from_repo``; False if the registry
        declined (it then opened an upload session, which is cancelled)."""
        operation = f"mount blob {repo}@{digest} from {from_repo}"
        session, scopes = self._start_upload(repo, digest, from_repo, operation)
        if session is None:
            return True
        self._call(
            "DELETE",
            self._location(session, operation),
            scopes=scopes,
            operation=f"cancel upload {repo}",
            ok=(204, 404),
        )
        return False

    def _location(self, response: httpx.Response, operation: str) -> httpx.URL:
        location = response.headers.get("location")
        if not location:
            raise RegistryError("upload response has no Location", operation=operation)
        return self._transport.url(location)

    def _upload(
        self, started: httpx.Response, blob: AnyBlob, scopes: Sequence[str], operation: str
    ) -> None:
        response = registry_blobs.upload(
            self._call,
            self._location(started, operation),
            blob,
            chunk_size=self._chunk_size,
            scopes=scopes,
            operation=operation,
            location=lambda r: self._location(r, operation),
            sent=lambda n: self._count(blob_bytes_uploaded=n),
        )
        self._check_reported(response, blob.digest, operation)

    def get_blob(self, repo: str, digest: str, max_size: int = DEFAULT_MAX_BLOB_SIZE) -> bytes:
        """Download a blob (at most ``max_size`` bytes) and verify its digest."""
        operation = f"GET blob {repo}@{digest}"
        _, body = self._call(
            "GET",
            registry_model.blob_path(repo, digest),
            scopes=registry_model.scopes(repo),
            operation=operation,
            ok=(200,),
            limit=max_size,
        )
        self._count(bytes_downloaded=len(body))
        algorithm, _, expected = digest.partition(":")
        if hashlib.new(algorithm, body).hexdigest() != expected:
            raise DigestMismatchError("blob content does not match its digest", operation=operation)
        return body

    def download_blob(
        self, repo: str, digest: str, dest: Path, max_size: int = DEFAULT_MAX_BLOB_SIZE
    ) -> int:
        """Stream a blob into ``dest``, hashing on the way; return its size.

        The bytes go to a temporary file beside ``dest`` and are renamed into place
        only when the digest matched, so ``dest`` never holds unverified content.
        """
        size = registry_blobs.download(
            self._call,
            registry_model.blob_path(repo, digest),
            digest,
            dest,
            scopes=registry_model.scopes(repo),
            operation=f"GET blob {repo}@{digest}",
            max_size=max_size,
        )
        self._count(bytes_downloaded=size)
        return size
