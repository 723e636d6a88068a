"""A ``docker load`` archive streamed from verified blobs, without a copy on disk.

The Docker runtime never pulls: it hands the engine the blobs the agent already
verified, as the ``docker save`` format (``manifest.json``, the config as
``<hex>.json``, one file per layer; the engine decompresses gzip layers itself and
checks each against the config's diff IDs, so the image ID it reports is the config
digest). :func:`archive_stream` yields the tar in chunks of at most
:data:`CHUNK` bytes, so a 1 GB model never sits in memory.

Layers the engine already holds are left out (``present``: the chain IDs of the
engine's layer stacks, :func:`chain_ids`): Docker's load reads a layer's file only
when it lacks that stack, so a weights-only update sends the engine the model layer
alone, not the base and runtime again. The manifest still names every layer.

Defence in depth against a blob changed on disk after it was verified: every file is
re-hashed while it streams, and the last chunk of a file is held back until its digest
and size matched, so a tampered file ends the stream with :class:`ArchiveError` before
the engine has the whole of it (a truncated archive fails to load).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgefleet_node.oci import parse as oci_parse
from edgefleet_node.oci import types as oci_types

__all__ = [
    "CHUNK",
    "ArchiveError",
    "ArchiveMember",
    "archive_bytes",
    "archive_stream",
    "chain_ids",
    "plan_archive",
]

CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE
_GZIP_LAYERS = frozenset({oci_types.OCI_LAYER_GZIP, oci_types.DOCKER_LAYER_GZIP})


class ArchiveError(ValueError):
    """The blobs do not make a loadable image, or one changed since it was verified."""


@dataclass(frozen=True)
class ArchiveMember:
    """One file of the archive: its name, where its bytes are, and what they must hash to."""

    name: str
    digest: str
    size: int
    path: Path | None = None  # None: ``data`` holds the bytes
    data: bytes = b""


def _verified_config(path: Path, digest: str) -> tuple[bytes, oci_parse.ImageConfig]:
    data = path.read_bytes()
    if oci_types.sha256_digest(data) != digest:
        raise ArchiveError(f"config blob {path} no longer has digest {digest}")
    try:
        return data, oci_parse.parse_config(data, expected_digest=digest)
    except oci_types.OCIError as exc:
        raise ArchiveError(f"config {digest}: {exc}") from exc


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain ID of each prefix of a layer stack (how the engine names its layers):
    the first diff ID, then ``sha256("<chain> <diff ID>")`` for each layer on top."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if chains:
            joined = f"{chains[-1]} {diff_id}".encode()
            diff_id = "sha256:" + hashlib.sha256(joined).hexdigest()
        chains.append(diff_id)
    return chains


def plan_archive(
    config_path: Path,
    config_digest: str,
    layers: Sequence[tuple[str, Path, str]],
    repo_tags: Sequence[str] = (),
    present: frozenset[str] = frozenset(),
) -> list[ArchiveMember]:
    """The members of the archive for a config and ``(digest, path, media type)`` layers.

    Checks what can be checked before streaming: the config's digest, that it lists one
    diff ID per layer, that every layer is a tar (optionally gzip'd) and that each file
    exists. Sizes come from the files and are checked again while streaming. The
    leading layers whose chain ID is in ``present`` get no file (the engine has them).
    """
    config, parsed = _verified_config(config_path, config_digest)
    if len(parsed.diff_ids) != len(layers):
        raise ArchiveError(
            f"config {config_digest} lists {len(parsed.diff_ids)} layers, the manifest"
            f" {len(layers)}"
        )
    held = 0
    for chain in chain_ids(parsed.diff_ids):
        if chain not in present:
            break
        held += 1
    members: list[ArchiveMember] = []
    layer_names: list[str] = []
    for index, (digest, path, media_type) in enumerate(layers):
        oci_types.check_digest(digest, "layer digest")
        if media_type not in oci_types.LAYER_MEDIA_TYPES:
            raise ArchiveError(f"layer {digest} has media type {media_type}, not a tar layer")
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ArchiveError(f"layer {digest} is not in the blob store: {exc}") from exc
        suffix = "layer.tar.gz" if media_type in _GZIP_LAYERS else "layer.tar"
        name = f"{digest.removeprefix('sha256:')}/{suffix}"
        layer_names.append(name)
        if index < held or any(m.name == name for m in members):  # held, or sent already
            continue
        members.append(ArchiveMember(name, digest, size, path))
    config_name = config_digest.removeprefix("sha256:") + ".json"
    manifest = [{"Config": config_name, "RepoTags": list(repo_tags) or None, "Layers": layer_names}]
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    head = [
        ArchiveMember(
            "manifest.json",
            oci_types.sha256_digest(manifest_bytes),
            len(manifest_bytes),
            data=manifest_bytes,
        ),
        ArchiveMember(config_name, config_digest, len(config), data=config),
    ]
    return head + members


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _file_chunks(member: ArchiveMember, chunk: int) -> Iterator[bytes]:
    """The file's bytes; the last chunk only after its size and digest matched."""
    if member.path is None:
        yield member.data
        return
    algorithm, _, expected = member.digest.partition(":")
    sha = hashlib.new(algorithm)
    seen = 0
    held = b""
    with member.path.open("rb") as f:
        while block := f.read(chunk):
            seen += len(block)
            if seen > member.size:
                raise ArchiveError(f"blob {member.digest} grew past {member.size} bytes")
            sha.update(block)
            if held:
                yield held
            held = block
    if seen != member.size or sha.hexdigest() != expected:
        raise ArchiveError(f"blob {member.digest} changed on disk since it was verified")
    if held:
        yield held


def archive_stream(members: Sequence[ArchiveMember], chunk: int = CHUNK) -> Iterator[bytes]:
    """The tar of ``members`` in chunks (headers, contents, padding, end marker)."""
    for member in members:
        yield _header(member.name, member.size)
        yield from _file_chunks(member, chunk)
        remainder = member.size % _BLOCK
        if remainder:
            yield b"\0" * (_BLOCK - remainder)
    yield b"\0" * (2 * _BLOCK)


def archive_bytes(members: Sequence[ArchiveMember]) -> bytes:
    """The whole archive in memory (tests and small images only)."""
    out = io.BytesIO()
    for part in archive_stream(members):
        out.write(part)
    return out.getvalue()
