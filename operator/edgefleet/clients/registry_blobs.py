"""Blob transfers of the registry client that never hold a large blob in memory.

:func:`upload` sends a blob (bytes, or a :class:`~edgefleet.clients.registry_model.FileBlob`
read from disk) in one ``PUT`` when it fits a chunk, else in ``PATCH`` chunks read one
at a time; :func:`download` streams a blob into a temporary file beside its
destination, hashing on the way, and renames it into place only when the digest
matched. Memory stays at one chunk whatever the blob's size.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from edgefleet.clients.registry_errors import DigestMismatchError
from edgefleet.clients.registry_model import FileBlob, HashingFile
from edgefleet.domain import oci

__all__ = ["AnyBlob", "chunks", "download", "upload"]

AnyBlob = oci.Blob | FileBlob


_PIECE = 1024 * 1024


def chunks(blob: AnyBlob, size: int) -> Iterator[bytes]:
    """The blob's bytes, ``size`` at a time (read from disk for a FileBlob)."""
    if isinstance(blob, FileBlob):
        yield from blob.chunks(size)
    else:
        for start in range(0, len(blob.data), size):
            yield blob.data[start : start + size]


def _pieces(blob: AnyBlob, start: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of the blob from ``start``, in 1 MiB pieces.

    A PATCH body is a generator of pieces, not one chunk-sized ``bytes``: httpx's
    request and response objects form reference cycles that keep their body alive
    until the cyclic garbage collector runs, and with 16 MiB bodies that added up to
    hundreds of MiB (measured with a 1 GiB layer). A piece is freed once it is sent.
    """
    end = start + length
    if isinstance(blob, FileBlob):
        with blob.path.open("rb") as f:
            f.seek(start)
            while start < end:
                piece = f.read(min(_PIECE, end - start))
                if not piece:
                    raise OSError(f"{blob.path} ended at byte {start}, expected {end}")
                start += len(piece)
                yield piece
    else:
        view = memoryview(blob.data)
        for offset in range(start, end, _PIECE):
            yield bytes(view[offset : min(offset + _PIECE, end)])


def upload(
    call: Callable[..., tuple[httpx.Response, bytes]],
    session: httpx.URL,
    blob: AnyBlob,
    *,
    chunk_size: int,
    scopes: Sequence[str],
    operation: str,
    location: Callable[[httpx.Response], httpx.URL],
    sent: Callable[[int], None],
) -> httpx.Response:
    """Upload ``blob`` into the upload ``session``; return the final PUT's response.

    At most one chunk goes in the final PUT (retried on transient failures); a larger
    blob goes in PATCHes of ``chunk_size`` bytes, streamed in pieces (never retried:
    the offset makes a blind retry unsafe).
    """
    final = b""
    if blob.size <= chunk_size:
        final = b"".join(chunks(blob, chunk_size))
    else:
        for start in range(0, blob.size, chunk_size):
            length = min(chunk_size, blob.size - start)
            response, _ = call(
                "PATCH",
                session,
                scopes=scopes,
                operation=operation,
                ok=(202,),
                content=_pieces(blob, start, length),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{start}-{start + length - 1}",
                },
            )
            sent(length)
            session = location(response)
    response, _ = call(
        "PUT",
        session,
        scopes=scopes,
        operation=operation,
        ok=(201,),
        params={"digest": blob.digest},
        content=final,
        headers={"Content-Type": "application/octet-stream"},
    )
    sent(len(final))
    return response


def download(
    call: Callable[..., tuple[httpx.Response, bytes]],
    path: str,
    digest: str,
    dest: Path,
    *,
    scopes: Sequence[str],
    operation: str,
    max_size: int,
) -> int:
    """Stream the blob at ``path`` into ``dest``, verified against ``digest``; its size."""
    algorithm = oci.check_digest(digest).partition(":")[0]
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "w+b") as f:
            sink = HashingFile(f, algorithm)
            call(
                "GET",
                path,
                scopes=scopes,
                operation=operation,
                ok=(200,),
                limit=max_size,
                sink=sink,
            )
            if sink.digest != digest:
                raise DigestMismatchError(
                    "blob content does not match its digest", operation=operation
                )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sink.size
