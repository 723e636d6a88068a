"""The runtime layer of each platform, built once per input set and kept on disk.

Building it means unpacking ~40 MB of wheels and compressing ~130 MB of files, so it
is cached under ``<cache>/runtime-layers/<key>.tar.gz`` (+ ``.json`` with its diff ID)
where the key hashes the platform's pinned wheel set and the server's sources. Writes
are atomic and guarded by a file lock, so operators and tests sharing a cache never
see half a layer; a cached blob whose digest does not match its record is rebuilt.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from edgefleet import filelock
from edgefleet.clients import wheels
from edgefleet.domain import modelimage, oci, runtime_pins

__all__ = ["RuntimeLayerCache"]


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class RuntimeLayerCache:
    """Runtime layers by platform, from ``cache_dir``."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        entries: Callable[[str, Path], list[oci.FileEntry]] = wheels.runtime_layer_entries,
    ) -> None:
        self._dir = cache_dir / "runtime-layers"
        self._wheels = cache_dir / "wheels"
        self._lock = threading.Lock()
        self._entries = entries  # (platform, wheel cache) -> layer entries; a test seam

    def layer(self, runtime: runtime_pins.RuntimePins) -> oci.Layer:
        sources = wheels.serving_sources()
        key = modelimage.build_key(
            {},
            base_index="",
            runtime_keys={runtime.platform: runtime.cache_key()},
            serving_sources=sources,
        ).removeprefix("sha256:")[:32]
        self._dir.mkdir(parents=True, exist_ok=True)
        blob_path, meta_path = self._dir / f"{key}.tar.gz", self._dir / f"{key}.json"
        with self._lock, filelock.locked(self._dir / f".{key}.lock"):
            if blob_path.is_file() and meta_path.is_file():
                meta = json.loads(meta_path.read_text())
                blob = oci.Blob(blob_path.read_bytes(), oci.OCI_LAYER_GZIP)
                if blob.digest == meta.get("digest"):
                    return oci.Layer(blob, meta["diff_id"], meta["uncompressed_size"])
            layer = oci.build_layer(self._entries(runtime.platform, self._wheels))
            _write_atomic(blob_path, layer.blob.data)
            _write_atomic(
                meta_path,
                json.dumps(
                    {
                        "digest": layer.blob.digest,
                        "diff_id": layer.diff_id,
                        "uncompressed_size": layer.uncompressed_size,
                    }
                ).encode(),
            )
            return layer
