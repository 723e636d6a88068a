"""Builds, pushes and signs multi-arch Python application images without a daemon.

The same way as model images (:mod:`edgefleet.clients.imagebuilder`): for each platform
take the base image from the multi-arch base index in the registry, add the
locked wheels (:func:`fetch_locked`: ``pip download --no-deps --require-hashes`` for
that platform, then every file checked against the lock; cached) as one layer and the
application (:func:`package_sources`, console scripts) as another
(:mod:`edgefleet.domain.appimage`), push only blobs the registry lacks, push and sign
each manifest, then the index, tagged. Same inputs, same digests.

Generic: edgefleet's own images (the edge-node agent, the control plane) are recipes
on this builder in :mod:`edgefleet.clients.edgefleetimages`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet import filelock
from edgefleet.clients import baseimage, signer, wheels
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import appimage, oci
from edgefleet.domain.runtime_lock import LockedWheel, check_wheel_filename
from edgefleet.domain.runtime_pins import require_runtime

__all__ = [
    "SOURCE_SUFFIXES",
    "AppBuildError",
    "AppBuildResult",
    "AppImageBuilder",
    "PlatformBuild",
    "Progress",
    "console_scripts",
    "fetch_locked",
    "package_sources",
    "publish_index",
]

Progress = Callable[[str], None]
#: Files of a package that are its sources (no caches, no data files).
SOURCE_SUFFIXES = (".py", ".typed")


class AppBuildError(RuntimeError):
    """The image cannot be built: a missing base, a wheel that does not match, …"""


@dataclass(frozen=True)
class PlatformBuild:
    platform: str
    digest: str
    size_bytes: int  # compressed layers, base included
    site_packages_bytes: int
    app_bytes: int


@dataclass(frozen=True)
class AppBuildResult:
    repository: str
    index_digest: str
    tags: tuple[str, ...]
    images: tuple[PlatformBuild, ...]
    seconds: float
    bytes_uploaded: int


def _problem(directory: Path, locked: Sequence[LockedWheel]) -> str | None:
    present = sorted(p.name for p in directory.glob("*.whl")) if directory.is_dir() else []
    if present != sorted(w.filename for w in locked):
        return f"files {present} instead of {sorted(w.filename for w in locked)}"
    for wheel in locked:
        path = directory / wheel.filename
        if path.stat().st_size != wheel.size or wheels.file_sha256(path) != wheel.sha256:
            return f"{wheel.filename} does not match the lock (size or sha256)"
    return None


def fetch_locked(platform: str, locked: Sequence[LockedWheel], cache_dir: Path) -> list[Path]:
    """The locked wheel files of ``platform``, downloaded once and re-verified on use."""
    runtime = require_runtime(platform)
    for wheel in locked:
        check_wheel_filename(wheel.filename, runtime)
    key = oci.sha256_digest(
        "\n".join(
            f"{w.filename} {w.sha256}" for w in sorted(locked, key=lambda w: w.filename)
        ).encode()
    ).removeprefix("sha256:")[:16]
    target = cache_dir / f"app-{platform.replace('/', '-')}-{key}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with filelock.locked(cache_dir / f".{target.name}.lock"):
        if _problem(target, locked) is not None:
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir))
            try:
                lines = [f"{w.name}=={w.version} --hash=sha256:{w.sha256}" for w in locked]
                wheels.pip_download(runtime, lines, staging)
                problem = _problem(staging, locked)
                if problem is not None:
                    raise AppBuildError(f"download for {platform}: {problem}")
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return [target / w.filename for w in sorted(locked, key=lambda w: w.filename)]


def package_sources(package: str) -> dict[str, bytes]:
    """``{"pkg/sub/mod.py": bytes}`` of an importable package's sources (no caches)."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise AppBuildError(f"{package} is not an importable package")
    root = Path(next(iter(found.submodule_search_locations)))
    sources = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts:
            sources[f"{package}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    return sources


def console_scripts(distribution: str, pyproject: Path | None = None) -> dict[str, str]:
    """Console scripts of ``distribution``: from its ``pyproject.toml`` when given
    (the checkout is the truth), else from the installed metadata."""
    if pyproject is not None and pyproject.is_file():
        project = tomllib.loads(pyproject.read_text())["project"]
        return dict(project.get("scripts") or {})
    entry_points = importlib.metadata.distribution(distribution).entry_points
    return {ep.name: ep.value for ep in entry_points if ep.group == "console_scripts"}


class AppImageBuilder:
    """Assembles and pushes app images on the base index of one registry."""

    def __init__(
        self,
        registry: RegistryClient,
        signing_key: ec.EllipticCurvePrivateKey,
        cache_dir: Path,
        *,
        base_repository: str = "edgefleet/base",
        base_reference: str = "bookworm",
    ) -> None:
        self._registry = registry
        self._key = signing_key
        self._cache = cache_dir
        self._base = (base_repository, base_reference)

    def build(
        self,
        spec: appimage.AppSpec,
        repo: str,
        platforms: Mapping[str, Sequence[LockedWheel]],
        sources: Mapping[str, bytes],
        scripts: Mapping[str, str],
        tags: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> AppBuildResult:
        """Build, push and sign ``spec`` for ``platforms``; tag the index with ``tags``.

        The build talks to the registry through its own metered view
        (:meth:`RegistryClient.metered`), so builds that share a client report their
        own byte counts.
        """
        with self._registry.metered() as registry:
            return self._build(registry, spec, repo, platforms, sources, scripts, tags, progress)

    def _build(
        self,
        registry: RegistryClient,
        spec: appimage.AppSpec,
        repo: str,
        platforms: Mapping[str, Sequence[LockedWheel]],
        sources: Mapping[str, bytes],
        scripts: Mapping[str, str],
        tags: Sequence[str],
        progress: Progress | None,
    ) -> AppBuildResult:
        say = progress or (lambda _m: None)
        started = time.monotonic()
        base_repo, base_ref = self._base
        data, media_type, _ = registry.get_manifest(base_repo, base_ref)
        index = oci.parse_index(data, media_type)
        app = appimage.app_layer(sources, scripts, spec.dirs)
        entries: list[tuple[oci.Descriptor, oci.Platform]] = []
        builds = []
        for platform, locked in sorted(platforms.items()):
            paths = fetch_locked(platform, locked, self._cache / "wheels")
            site = appimage.site_packages_layer((p.name, p.read_bytes()) for p in paths)
            base, base_config = baseimage.platform_base(registry, base_repo, index, platform)
            image = appimage.assemble(base_config, base.layers, site, app, spec)
            baseimage.copy_base_layers(registry, base_repo, repo, base.layers)
            for new in (site.blob, app.blob, image.config):
                registry.push_blob(repo, new)
            registry.ensure_manifest(repo, image.manifest.digest, image.manifest)
            signer.sign_and_push(registry, repo, image.manifest.digest, self._key)
            size = sum(d.size for d in base.layers) + site.blob.size + app.blob.size
            say(f"{spec.name} {platform}: {repo}@{image.manifest.digest} ({size} bytes)")
            builds.append(
                PlatformBuild(platform, image.manifest.digest, size, site.blob.size, app.blob.size)
            )
            entries.append((image.manifest.descriptor(), image.platform))
        return publish_index(
            registry,
            repo,
            self._key,
            entries,
            builds,
            title=spec.name,
            version=spec.version,
            tags=tags,
            started=started,
            say=say,
        )


def publish_index(
    registry: RegistryClient,
    repo: str,
    key: ec.EllipticCurvePrivateKey,
    entries: Sequence[tuple[oci.Descriptor, oci.Platform]],
    builds: Sequence[PlatformBuild],
    *,
    title: str,
    version: str,
    tags: Sequence[str],
    started: float,
    say: Progress,
) -> AppBuildResult:
    """Push the index over the platform images (by digest and ``tags``), sign it, sum up."""
    index_blob = oci.image_index(
        entries,
        annotations={
            "org.opencontainers.image.title": title,
            "org.opencontainers.image.version": version,
        },
    )
    for reference in (index_blob.digest, *tags):
        registry.ensure_manifest(repo, reference, index_blob)
    signer.sign_and_push(registry, repo, index_blob.digest, key)
    say(f"{title}: index {repo}@{index_blob.digest} signed")
    return AppBuildResult(
        repository=f"{registry.host}/{repo}",
        index_digest=index_blob.digest,
        tags=tuple(tags),
        images=tuple(builds),
        seconds=round(time.monotonic() - started, 3),
        bytes_uploaded=registry.snapshot().bytes_uploaded,
    )
