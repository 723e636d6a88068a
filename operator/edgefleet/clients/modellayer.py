"""The model layer of an image, streamed from the weights file to a cached layer file.

A model of gigabytes never sits in memory: the tar stream is written through gzip
into a file while both the uncompressed stream (the diff ID) and the compressed one
(the blob digest) are hashed, in 1 MiB pieces. The bytes are exactly those of
:func:`edgefleet.domain.modelimage.model_layer` (same entries, PAX headers, gzip
settings), so digests do not depend on which path built the layer. Layers are kept
under ``<cache>/model-layers/<weights sha256>.tar.gz`` (+ ``.json``), written
atomically, so a rebuild of the same weights compresses nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from edgefleet import filelock
from edgefleet.clients.registry_model import FileBlob
from edgefleet.domain import modelimage, oci

__all__ = ["FileLayer", "model_layer_file"]

_CHUNK = 1024 * 1024
#: Bump when the layer's bytes change, so cached layers are not reused.
_LAYOUT = "1"


@dataclass(frozen=True)
class FileLayer:
    """A layer whose compressed blob is a file."""

    blob: FileBlob
    diff_id: str
    uncompressed_size: int

    def descriptor(self) -> oci.Descriptor:
        return self.blob.descriptor()


class _HashingWriter:
    """A binary sink: counts and hashes what passes, then writes it to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.count += len(data)
        self.out.write(data)
        return len(data)

    def tell(self) -> int:
        return self.count

    def flush(self) -> None:
        self.out.flush()


def _write_layer(weights: Path, out: BinaryIO) -> tuple[str, int, str, int]:
    """(diff ID, uncompressed size, blob digest, blob size) of the layer written to ``out``."""
    compressed = _HashingWriter(out)
    gz = gzip.GzipFile(
        filename="",
        mode="wb",
        compresslevel=oci.DEFAULT_COMPRESSLEVEL,
        fileobj=compressed,
        mtime=0,
    )
    plain = _HashingWriter(gz)  # type: ignore[arg-type]
    size = weights.stat().st_size
    path = modelimage.MODEL_PATH
    parents = sorted({"/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)})
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for parent in parents:
            tar.addfile(oci.FileEntry.dir(parent).tarinfo(0))
        info = tarfile.TarInfo(path)
        info.mtime, info.size, info.mode = 0, size, 0o444
        with weights.open("rb") as f:
            tar.addfile(info, f)
    gz.close()
    return (
        "sha256:" + plain.sha.hexdigest(),
        plain.count,
        "sha256:" + compressed.sha.hexdigest(),
        compressed.count,
    )


def model_layer_file(weights: Path, weights_sha256: str, cache_dir: Path) -> FileLayer:
    """The model layer of the weights in ``weights`` (hex ``weights_sha256``), cached."""
    directory = cache_dir / "model-layers"
    directory.mkdir(parents=True, exist_ok=True)
    key = f"{weights_sha256}-{_LAYOUT}"
    blob_path, meta_path = directory / f"{key}.tar.gz", directory / f"{key}.json"
    with filelock.locked(directory / f".{key}.lock"):
        if blob_path.is_file() and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("size") == blob_path.stat().st_size:
                return _layer(blob_path, meta)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key}.")
        try:
            with os.fdopen(fd, "wb") as out:
                diff_id, plain_size, digest, size = _write_layer(weights, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, blob_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        meta = {"digest": digest, "size": size, "diff_id": diff_id, "uncompressed_size": plain_size}
        _write_json(meta_path, meta)
        return _layer(blob_path, meta)


def _layer(path: Path, meta: dict[str, object]) -> FileLayer:
    blob = FileBlob(path, oci.OCI_LAYER_GZIP, str(meta["digest"]), int(str(meta["size"])))
    return FileLayer(blob, str(meta["diff_id"]), int(str(meta["uncompressed_size"])))


def _write_json(path: Path, doc: dict[str, object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)
