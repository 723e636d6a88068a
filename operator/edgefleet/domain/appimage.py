"""What a Python application image is: base, locked wheels, the app's sources, one config.

The operator, the gateway and the edge-node agent ship as images assembled the same
way as model images, without a Docker daemon (pure functions over bytes, no I/O):

1. the platform's Debian base layer(s) (``python3`` 3.11 from bookworm);
2. :func:`site_packages_layer` — the locked wheels of that platform unpacked into
   ``/opt/edgefleet/site-packages`` (:mod:`edgefleet.domain.runtime_layer` rules);
3. :func:`app_layer` — the application's packages under ``/opt/edgefleet/app``, a
   launcher per console script in ``/usr/local/bin`` and the directories the app may
   write (state, owned by the app's user) — the same bytes on every platform, so the
   registry stores it once.

:func:`assemble` writes the config (entrypoint, non-root user, ``PYTHONPATH``) and the
manifest. Layer order puts what changes most often (the app) last. Everything is
byte-reproducible: the same inputs give the same digests.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from edgefleet.domain import oci
from edgefleet.domain.runtime_layer import APP_DIR, RUNTIME_ENV, wheels_to_entries

__all__ = [
    "LAUNCHER_DIR",
    "AppImage",
    "AppSpec",
    "OwnedDir",
    "app_layer",
    "assemble",
    "launcher",
    "site_packages_layer",
]

LAUNCHER_DIR = "usr/local/bin"
_ENTRY_POINT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_]\w*)")
_SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_USER = re.compile(r"[1-9][0-9]{0,9}:[0-9]{1,10}")


@dataclass(frozen=True)
class OwnedDir:
    """A directory the app writes (a volume mount point), owned by its user."""

    path: str
    uid: int
    gid: int
    mode: int = 0o700


@dataclass(frozen=True)
class AppSpec:
    """What the image says about the application."""

    name: str
    version: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    user: str = "65532:65532"  # numeric uid:gid, never root
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    dirs: tuple[OwnedDir, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if _USER.fullmatch(self.user) is None:
            raise ValueError(f"user {self.user!r} must be a numeric non-root uid:gid")
        if not self.entrypoint:
            raise ValueError("an app image needs an entrypoint")


@dataclass(frozen=True)
class AppImage:
    platform: oci.Platform
    config: oci.Blob
    manifest: oci.Blob


def site_packages_layer(wheels: Iterable[tuple[str, bytes]]) -> oci.Layer:
    """The locked wheels of one platform, unpacked as ``pip install --target`` would."""
    return oci.build_layer(wheels_to_entries(wheels))


def launcher(entry_point: str) -> bytes:
    """A console-script launcher for ``module:function`` run by the image's ``python3``."""
    match = _ENTRY_POINT.fullmatch(entry_point)
    if match is None:
        raise ValueError(f"entry point {entry_point!r} is not module:function")
    module, function = match[1], match[2]
    return (
        "#!/usr/bin/python3\n"
        f"# launcher for {entry_point} (PYTHONPATH is set by the image)\n"
        "import sys\n\n"
        f"from {module} import {function}\n\n"
        f"sys.exit({function}())\n"
    ).encode()


def _add(tar: tarfile.TarFile, info: tarfile.TarInfo, data: bytes | None = None) -> None:
    info.mtime = 0
    if data is not None:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def app_layer(
    sources: Mapping[str, bytes],
    scripts: Mapping[str, str],
    dirs: Sequence[OwnedDir] = (),
) -> oci.Layer:
    """Sources (``{"pkg/mod.py": bytes}``, relative to the app directory), launchers
    for ``scripts`` (``{"name": "module:function"}``) and owned directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(sources):
            normal = oci.FileEntry.file(path, b"").path  # validates: no '..', not absolute
            if normal != path or not path.endswith((".py", ".typed", ".json")):
                raise ValueError(f"app source {path!r} is not a relative module path")
            _add(tar, tarfile.TarInfo(f"{APP_DIR}/{path}"), sources[path])
        for name in sorted(scripts):
            if _SCRIPT_NAME.fullmatch(name) is None:
                raise ValueError(f"console script name {name!r} is not allowed")
            info = tarfile.TarInfo(f"{LAUNCHER_DIR}/{name}")
            info.mode = 0o755
            _add(tar, info, launcher(scripts[name]))
        for owned in dirs:
            info = tarfile.TarInfo(oci.FileEntry.dir(owned.path).path)
            info.type, info.mode, info.uid, info.gid = (
                tarfile.DIRTYPE,
                owned.mode,
                owned.uid,
                owned.gid,
            )
            _add(tar, info)
    return oci.layer_from_tar(buf.getvalue())


def assemble(
    base_config: oci.ImageConfig,
    base_layers: Sequence[oci.Descriptor],
    site_packages: oci.Layer,
    app: oci.Layer,
    spec: AppSpec,
) -> AppImage:
    """Config and manifest of ``spec``'s image for ``base_config``'s platform."""
    env = dict(RUNTIME_ENV)
    env.update(spec.env)
    labels = {
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.version": spec.version,
        **spec.labels,
    }
    if spec.description:
        labels["org.opencontainers.image.description"] = spec.description
    config = oci.image_config(
        base_config.platform,
        [site_packages.diff_id, app.diff_id],
        entrypoint=list(spec.entrypoint),
        cmd=list(spec.cmd) if spec.cmd else None,
        env=env,
        labels=labels,
        workdir="/",
        user=spec.user,
        base_config=base_config,
        history=[f"{spec.name}: locked wheels", f"{spec.name}: application {spec.version}"],
    )
    manifest = oci.image_manifest(
        config,
        [*base_layers, site_packages.descriptor(), app.descriptor()],
        annotations={
            "org.opencontainers.image.title": spec.name,
            "org.opencontainers.image.version": spec.version,
        },
    )
    return AppImage(base_config.platform, config, manifest)
