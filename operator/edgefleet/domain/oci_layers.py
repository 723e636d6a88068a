"""Byte-reproducible image layers: gzip'd tar archives built from entries or tarballs.

The same inputs always give the same bytes (and so the same digests), the way ko,
jib and rules_oci build layers: entries sorted by path, parent directories added,
ownership and timestamps fixed, uname/gname empty, PAX tar format, gzip with mtime 0,
no file name and a fixed compression level. The output depends only on the inputs,
the Python ``tarfile`` module and zlib, so pin those where digests must match across
machines.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from edgefleet_node.oci import types as oci_types

__all__ = [
    "DEFAULT_COMPRESSLEVEL",
    "FileEntry",
    "Layer",
    "build_layer",
    "layer_from_tar",
    "normalise_path",
]

DEFAULT_COMPRESSLEVEL = 6
_KEPT_PAX_PREFIX = "SCHILY.xattr."
_DROPPED_XATTRS = frozenset({"SCHILY.xattr.security.selinux"})
_DEVICE_TYPES = frozenset({tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE})
_MAX_LINK_CHAIN = 16


def normalise_path(path: str) -> str:
    """``usr/bin/x`` for ``/usr/bin/x``, ``./usr/bin/x/``; rejects ``..`` and NUL."""
    if "\0" in path:
        raise oci_types.OCIError(f"path {path!r} contains NUL")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise oci_types.OCIError(f"path {path!r} escapes the root with '..'")
    return "/".join(parts)


@dataclass(frozen=True)
class FileEntry:
    """One entry of a layer: a file (``data``), a symlink (``symlink``) or a directory."""

    path: str
    data: bytes | None = field(default=None, repr=False)
    symlink: str | None = None
    directory: bool = False
    mode: int | None = None

    def __post_init__(self) -> None:
        kinds = (self.data is not None) + (self.symlink is not None) + self.directory
        if kinds != 1:
            raise oci_types.OCIError(
                f"entry {self.path!r} must be exactly one of file data, symlink or directory"
            )
        normal = normalise_path(self.path)
        if not normal:
            raise oci_types.OCIError(f"entry path {self.path!r} names the root")
        object.__setattr__(self, "path", normal)
        if self.mode is not None and not 0 <= self.mode <= 0o7777:
            raise oci_types.OCIError(f"entry {self.path!r} has an invalid mode {self.mode:o}")

    @classmethod
    def file(cls, path: str, data: bytes, mode: int = 0o644) -> FileEntry:
        return cls(path, data=data, mode=mode)

    @classmethod
    def dir(cls, path: str, mode: int = 0o755) -> FileEntry:
        return cls(path, directory=True, mode=mode)

    @classmethod
    def link(cls, path: str, target: str) -> FileEntry:
        return cls(path, symlink=target)

    def tarinfo(self, mtime: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.path)
        info.mtime = mtime
        if self.directory:
            info.type, info.mode = tarfile.DIRTYPE, 0o755 if self.mode is None else self.mode
        elif self.symlink is not None:
            info.type, info.linkname = tarfile.SYMTYPE, self.symlink
            info.mode = 0o777 if self.mode is None else self.mode
        else:
            info.size = len(self.data or b"")
            info.mode = 0o644 if self.mode is None else self.mode
        return info


@dataclass(frozen=True)
class Layer:
    """A compressed layer blob and the digest of its uncompressed tar (the diff ID)."""

    blob: oci_types.Blob
    diff_id: str
    uncompressed_size: int

    def descriptor(self) -> oci_types.Descriptor:
        return self.blob.descriptor()


class _HashingGzip(io.RawIOBase):
    """A write-only sink: hashes the tar stream and gzips it into memory."""

    def __init__(self, compresslevel: int) -> None:
        self.sha = hashlib.sha256()
        self.count = 0
        self.out = io.BytesIO()
        self.gzip = gzip.GzipFile(
            filename="", mode="wb", compresslevel=compresslevel, fileobj=self.out, mtime=0
        )

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.gzip.write(data)
        self.count += len(data)
        return len(data)

    def tell(self) -> int:
        return self.count

    def finish(self) -> Layer:
        self.gzip.close()
        blob = oci_types.Blob(self.out.getvalue(), oci_types.OCI_LAYER_GZIP)
        return Layer(blob, "sha256:" + self.sha.hexdigest(), self.count)


def _write(items: Iterable[tuple[tarfile.TarInfo, bytes | None]], compresslevel: int) -> Layer:
    sink = _HashingGzip(compresslevel)
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in items:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return sink.finish()


def _parents(paths: Iterable[str]) -> set[str]:
    parents: set[str] = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while parent and parent not in parents:
            parents.add(parent)
            parent = posixpath.dirname(parent)
    return parents


def build_layer(
    entries: Iterable[FileEntry], *, mtime: int = 0, compresslevel: int = DEFAULT_COMPRESSLEVEL
) -> Layer:
    """A reproducible layer of ``entries``; missing parent directories get mode 0755."""
    by_path: dict[str, FileEntry] = {}
    for entry in entries:
        if entry.path in by_path:
            raise oci_types.OCIError(f"layer entry {entry.path!r} is given twice")
        by_path[entry.path] = entry
    for parent in _parents(by_path):
        existing = by_path.get(parent)
        if existing is None:
            by_path[parent] = FileEntry.dir(parent)
        elif not existing.directory:
            raise oci_types.OCIError(f"layer entry {parent!r} is a parent but not a directory")
    ordered = sorted(by_path.values(), key=lambda e: e.path.encode())
    return _write(((e.tarinfo(mtime), e.data) for e in ordered), compresslevel)


def _normal_member(member: tarfile.TarInfo, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(normalise_path(member.name))
    info.type = tarfile.REGTYPE if member.isreg() else member.type
    info.mode = member.mode & 0o7777
    info.uid, info.gid = member.uid, member.gid
    info.mtime = mtime
    info.linkname = member.linkname
    info.devmajor, info.devminor = member.devmajor, member.devminor
    info.size = member.size if member.isreg() else 0
    info.pax_headers = {
        k: v
        for k, v in sorted(member.pax_headers.items())
        if k.startswith(_KEPT_PAX_PREFIX) and k not in _DROPPED_XATTRS
    }
    return info


def _link_source(name: str, members: dict[str, tarfile.TarInfo]) -> str:
    """Follow hard links from ``name`` to the regular file that holds the data."""
    for _ in range(_MAX_LINK_CHAIN):
        member = members.get(name)
        if member is None:
            raise oci_types.OCIError(f"hard link points to a missing entry {name!r}")
        if not member.islnk():
            if not member.isreg():
                raise oci_types.OCIError(f"hard link points to {name!r}, not a regular file")
            return name
        name = normalise_path(member.linkname)
    raise oci_types.OCIError(f"hard link chain at {name!r} is too long")


def layer_from_tar(
    source: bytes | str | os.PathLike[str],
    *,
    clamp_mtime: int | None = None,
    keep_devices: bool = False,
    compresslevel: int = DEFAULT_COMPRESSLEVEL,
) -> Layer:
    """Re-normalise a rootfs tarball (e.g. from mmdebstrap) into a reproducible layer.

    Entries are sorted, uname/gname dropped (numeric uid/gid and modes kept, so setgid
    files and service users survive), only ``SCHILY.xattr.*`` PAX records kept (file
    capabilities), and hard-link sets re-pointed at their first name in sorted order.
    Timestamps become 0, or with ``clamp_mtime`` are clamped to at most that value:
    clamping to ``SOURCE_DATE_EPOCH`` keeps package files' timestamps, so Python's
    timestamp-based ``.pyc`` caches stay valid. Device nodes and FIFOs are dropped
    unless ``keep_devices`` (container runtimes mount their own ``/dev``).
    """
    path = None if isinstance(source, bytes) else source
    fileobj = io.BytesIO(source) if isinstance(source, bytes) else None
    with tarfile.open(path, mode="r:*", fileobj=fileobj) as tar:
        members: dict[str, tarfile.TarInfo] = {}
        for member in tar.getmembers():
            name = normalise_path(member.name)
            if not name or (member.type in _DEVICE_TYPES and not keep_devices):
                continue
            members[name] = member  # a later entry for the same path replaces it
        groups: dict[str, list[str]] = {}
        for name, member in members.items():
            if member.islnk() or member.isreg():
                source_name = _link_source(name, members) if member.islnk() else name
                groups.setdefault(source_name, []).append(name)
        holder: dict[str, tuple[str, str]] = {}  # name -> (data source, first name)
        for source_name, names in groups.items():
            first = min(names, key=str.encode)
            holder.update(dict.fromkeys(names, (source_name, first)))
        missing = _parents(members) - members.keys()

        def items() -> Iterable[tuple[tarfile.TarInfo, bytes | None]]:
            for name in sorted(members.keys() | missing, key=str.encode):
                if name in missing:
                    yield FileEntry.dir(name).tarinfo(0), None
                    continue
                member = members[name]
                mtime = 0 if clamp_mtime is None else min(int(member.mtime), clamp_mtime)
                if name not in holder:
                    yield _normal_member(member, mtime), None
                    continue
                data_name, first = holder[name]
                original = members[data_name]
                info = _normal_member(original, mtime)
                info.name = name
                if name != first:
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
                    yield info, None
                    continue
                stream = tar.extractfile(original)
                assert stream is not None  # a regular file always has a stream
                yield info, stream.read()

        return _write(items(), compresslevel)
