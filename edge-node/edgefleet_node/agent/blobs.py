"""Downloading blobs into the content-addressed store: resume, digest, size, stall.

A blob is streamed into ``blobs/sha256/<hex>.partial`` and hashed while it arrives;
only when exactly the descriptor's size has arrived and the digest matches is it
fsync'd and renamed to ``<hex>`` — so a file under its digest name is always verified
content. A download never reads past the declared size (an endless or oversized stream
is cut off there), a response that declares more is refused, a transfer with no byte for
``stall_timeout`` seconds is aborted, and an interrupted download resumes with
``Range: bytes=<partial size>-``.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
from pathlib import Path

from edgefleet_node.agent import store
from edgefleet_node.agent.client import GatewayClient, UnreachableError
from edgefleet_node.oci.types import Descriptor

__all__ = ["CHUNK", "DownloadError", "Downloaded", "fetch_blob"]

CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(Exception):
    """A blob could not be stored; ``reason`` is the condition reason and ``transient``
    says whether retrying may help (network) or not (the content is wrong)."""

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.transient = transient


class Downloaded:
    """Byte counts of one fetch (for the benchmark): ``received`` over the network,
    ``resumed_from`` bytes already on disk."""

    def __init__(self) -> None:
        self.received = 0
        self.resumed_from = 0


def _hash_existing(path: Path, limit: int) -> tuple[hashlib._Hash, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as src:
            while size < limit and (chunk := src.read(min(CHUNK, limit - size))):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        return digest, 0
    return digest, size


def fetch_blob(
    client: GatewayClient,
    repository: str,
    desc: Descriptor,
    state: store.StateDir,
    *,
    stall_timeout: float = 60.0,
    stats: Downloaded | None = None,
) -> Path:
    """The verified blob for ``desc`` in the store, downloading what is missing."""
    final = state.blob(desc.digest)
    if final.exists():
        return final
    if not desc.digest.startswith("sha256:"):
        raise DownloadError("UnsupportedDigest", f"{desc.digest}: only sha256 is supported")
    partial = final.with_name(final.name + ".partial")
    stats = stats or Downloaded()
    for attempt in (0, 1):
        hasher, have = _hash_existing(partial, desc.size)
        oversized = partial.exists() and partial.stat().st_size > desc.size
        if oversized or attempt == 1:
            hasher, have = hashlib.sha256(), 0
            partial.unlink(missing_ok=True)
        stats.resumed_from = have
        if have < desc.size:
            hasher, have = _stream(
                client, repository, desc, partial, hasher, have, stall_timeout, stats
            )
        if have == desc.size and "sha256:" + hasher.hexdigest() == desc.digest:
            with partial.open("rb+") as done:
                os.fsync(done.fileno())
            os.replace(partial, final)
            store.fsync_dir(final.parent)
            return final
        if stats.resumed_from == 0:
            break  # a fresh download that does not match: the content is wrong
    partial.unlink(missing_ok=True)
    raise DownloadError(
        "BlobDigestMismatch", f"blob {desc.digest} arrived with other content; discarded"
    )


def _stream(
    client: GatewayClient,
    repository: str,
    desc: Descriptor,
    partial: Path,
    hasher: hashlib._Hash,
    have: int,
    stall_timeout: float,
    stats: Downloaded,
) -> tuple[hashlib._Hash, int]:
    path = f"/v2/{repository}/blobs/{desc.digest}"
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        conn, response = client.open("GET", path, headers=headers, timeout=stall_timeout)
    except UnreachableError as exc:
        raise DownloadError("GatewayUnreachable", str(exc), transient=True) from exc
    try:
        if response.status == 200 and have:
            hasher, have = hashlib.sha256(), 0  # the server ignored Range: start over
            partial.unlink(missing_ok=True)
        elif response.status == 206:
            match = _RANGE.fullmatch(response.getheader("Content-Range") or "")
            if match is None or int(match[1]) != have:
                raise DownloadError(
                    "BadRange",
                    f"blob {desc.digest}: the answer to a Range request does not "
                    f"start at byte {have}",
                    transient=True,
                )
        elif response.status == 404:
            raise DownloadError("BlobUnknown", f"the gateway does not serve blob {desc.digest}")
        elif response.status != 200:
            raise DownloadError(
                "DownloadFailed", f"blob {desc.digest}: HTTP {response.status}", transient=True
            )
        remaining = desc.size - have
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > remaining:
            raise DownloadError(
                "BlobTooLarge",
                f"blob {desc.digest}: the gateway sends {length} bytes, "
                f"the descriptor allows {remaining} more",
            )
        mode = "ab" if have else "wb"
        with partial.open(mode, buffering=0) as out:
            while remaining > 0:
                try:
                    chunk = response.read(min(CHUNK, remaining))
                except TimeoutError as exc:
                    raise DownloadError(
                        "DownloadStalled",
                        f"blob {desc.digest}: no data for {stall_timeout:.0f}s",
                        transient=True,
                    ) from exc
                except (OSError, http.client.HTTPException) as exc:
                    raise DownloadError(
                        "DownloadInterrupted", f"blob {desc.digest}: {exc}", transient=True
                    ) from exc
                if not chunk:
                    break
                try:
                    written = out.write(chunk)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    written = -1
                if written != len(chunk):
                    # A full disk: free what this download took, for the running workload.
                    out.close()
                    partial.unlink(missing_ok=True)
                    # Retried with backoff: space may be freed meanwhile.
                    raise DownloadError(
                        "DiskFull", f"blob {desc.digest}: the disk is full", transient=True
                    )
                hasher.update(chunk)
                have += len(chunk)
                remaining -= len(chunk)
                stats.received += len(chunk)
        if remaining > 0:
            raise DownloadError(
                "DownloadInterrupted",
                f"blob {desc.digest}: the stream ended {remaining} bytes early",
                transient=True,
            )
        return hasher, have
    finally:
        response.close()
        client.done(conn)
