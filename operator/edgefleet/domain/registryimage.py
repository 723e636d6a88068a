"""The bundled registry's image: Debian's ``docker-registry`` on the Debian base.

The chart's optional all-in-one registry (``registry.bundled``) cannot pull a public
image here, so the project builds it like its other images, without a daemon: the
platform's Debian base layer(s) from the base index, plus one layer holding the files
of Debian bookworm's ``docker-registry`` package for that architecture — the binary
(``/usr/bin/docker-registry``, linked only against the base's libc) and its copyright
file — a default configuration and the storage directory owned by :data:`UID`.

The ``.deb`` of each architecture is pinned by pool path, size and sha256 in
``registry_image_lock.json`` beside this module (values read from the suite's signed
indexes with ``apt-cache show docker-registry`` for each architecture); the builder
refuses any other bytes. It runs as uid/gid :data:`UID` with a read-only root
filesystem: the chart mounts the storage volume at :data:`STORAGE_DIR`, its
configuration and TLS material read-only. Pure functions over bytes, no I/O.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass

from edgefleet.domain import oci
from edgefleet.domain.oci_layers import normalise_path

__all__ = [
    "BINARY",
    "CONFIG_PATH",
    "COPYRIGHT",
    "LOCK_FILE",
    "PORT",
    "STORAGE_DIR",
    "UID",
    "DebError",
    "LockedDeb",
    "RegistryImage",
    "RegistryLock",
    "assemble",
    "deb_members",
    "default_config",
    "parse_lock",
    "registry_layer",
]

UID = 65532
PORT = 5000
BINARY = "usr/bin/docker-registry"
COPYRIGHT = "usr/share/doc/docker-registry/copyright"
CONFIG_PATH = "etc/docker/registry/config.yml"
STORAGE_DIR = "var/lib/registry"
LOCK_FILE = "registry_image_lock.json"
_WANTED = (BINARY, COPYRIGHT)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_POOL_PATH = re.compile(r"pool/main/[a-z0-9]+/[a-z0-9.+-]+/[A-Za-z0-9.+~_-]+\.deb")
_AR_MAGIC = b"!<arch>\n"
_MAX_DATA = 256 * 1024 * 1024


class DebError(ValueError):
    """A .deb that is not what the lock says, or not a Debian binary package."""


@dataclass(frozen=True)
class LockedDeb:
    platform: str
    path: str  # relative to the mirror, e.g. pool/main/d/docker-registry/…_arm64.deb
    size: int
    sha256: str


@dataclass(frozen=True)
class RegistryLock:
    package: str
    version: str
    suite: str
    debs: Mapping[str, LockedDeb]  # by OCI platform

    def deb(self, platform: str) -> LockedDeb:
        if platform not in self.debs:
            known = ", ".join(sorted(self.debs))
            raise DebError(f"the registry image lock has no {platform} package (have: {known})")
        return self.debs[platform]


def parse_lock(text: str) -> RegistryLock:
    """Parse and validate ``registry_image_lock.json``."""
    doc = json.loads(text)
    debs = {}
    for platform, entry in sorted(doc["debs"].items()):
        deb = LockedDeb(platform, str(entry["path"]), int(entry["size"]), str(entry["sha256"]))
        if not _POOL_PATH.fullmatch(deb.path) or not _SHA256.fullmatch(deb.sha256):
            raise DebError(f"lock entry for {platform} is malformed: {entry!r}")
        debs[platform] = deb
    return RegistryLock(str(doc["package"]), str(doc["version"]), str(doc["suite"]), debs)


def _ar_members(data: bytes) -> dict[str, bytes]:
    if not data.startswith(_AR_MAGIC):
        raise DebError("not an ar archive (a .deb starts with !<arch>)")
    members, offset = {}, len(_AR_MAGIC)
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        if header[58:60] != b"`\n":
            raise DebError(f"corrupt ar header at byte {offset}")
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = offset + 60
        members[name] = data[start : start + size]
        offset = start + size + (size % 2)
    return members


def deb_members(deb: bytes, locked: LockedDeb) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """The wanted files of the locked ``.deb`` (checked against the lock first):
    ``{"usr/bin/docker-registry": (info, bytes), …}``."""
    if len(deb) != locked.size or oci.sha256_digest(deb) != f"sha256:{locked.sha256}":
        raise DebError(f"{locked.path} does not match the lock (size or sha256)")
    members = _ar_members(deb)
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None or not data_name.endswith((".xz", ".gz")):
        raise DebError(f"{locked.path}: no data.tar.xz or data.tar.gz member")
    found: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(members[data_name]), mode="r:*") as tar:
        for member in tar:
            name = normalise_path(member.name)
            if name in _WANTED and member.isreg() and member.size <= _MAX_DATA:
                extracted = tar.extractfile(member)
                assert extracted is not None
                found[name] = (member, extracted.read())
    missing = sorted(set(_WANTED) - found.keys())
    if missing:
        raise DebError(f"{locked.path}: missing {', '.join(missing)}")
    return found


def default_config(port: int = PORT) -> bytes:
    """The image's own configuration: plain HTTP on ``port``, filesystem storage. The
    chart replaces it with one that serves TLS and checks credentials."""
    return (
        "version: 0.1\n"
        "log: {level: info, formatter: json}\n"
        f"storage: {{filesystem: {{rootdirectory: /{STORAGE_DIR}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: ':{port}'}}\n"
    ).encode()


def _add(tar: tarfile.TarFile, name: str, mode: int, data: bytes | None, uid: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.uid, info.gid, info.mtime = mode, uid, uid, 0
    if data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def registry_layer(files: Mapping[str, tuple[tarfile.TarInfo, bytes]]) -> oci.Layer:
    """The package's files, the default config and the storage directory (owned by
    :data:`UID`, mode 0700), as one reproducible layer."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, CONFIG_PATH, 0o644, default_config())
        for name in sorted(files):
            _add(tar, name, 0o755 if name == BINARY else 0o644, files[name][1])
        _add(tar, STORAGE_DIR, 0o700, None, uid=UID)
    return oci.layer_from_tar(buf.getvalue())


@dataclass(frozen=True)
class RegistryImage:
    platform: oci.Platform
    config: oci.Blob
    manifest: oci.Blob


def assemble(
    base_config: oci.ImageConfig,
    base_layers: list[oci.Descriptor],
    layer: oci.Layer,
    version: str,
) -> RegistryImage:
    """Config and manifest of the registry image for ``base_config``'s platform."""
    labels = {
        "org.opencontainers.image.title": "edgefleet-registry",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.description": "Debian's docker-registry on the edgefleet base",
        "io.edgefleet.component": "registry",
    }
    config = oci.image_config(
        base_config.platform,
        [layer.diff_id],
        entrypoint=[f"/{BINARY}", "serve"],
        cmd=[f"/{CONFIG_PATH}"],
        exposed_ports=[PORT],
        labels=labels,
        workdir="/",
        user=f"{UID}:{UID}",
        base_config=base_config,
        history=[f"docker-registry {version} (Debian package files)"],
    )
    manifest = oci.image_manifest(
        config,
        [*base_layers, layer.descriptor()],
        annotations={
            "org.opencontainers.image.title": "edgefleet-registry",
            "org.opencontainers.image.version": version,
        },
    )
    return RegistryImage(base_config.platform, config, manifest)
