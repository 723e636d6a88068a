"""edgefleet's own images: recipes on the generic :mod:`edgefleet.clients.appbuilder`.

:func:`build_node_image` is the edge-node agent's image (``edgefleet image build-node``),
:func:`build_control_plane_image` the operator's and gateway's
(``edgefleet image build-control-plane``). Each is built from its wheel lock in
:mod:`edgefleet.domain` and tagged with the installed version of its distribution.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from edgefleet.clients import appbuilder
from edgefleet.domain import appimage, controlplaneimage, nodeimage

__all__ = ["build_control_plane_image", "build_node_image", "control_plane_sources"]


def _node_pyproject() -> Path | None:
    found = importlib.util.find_spec(nodeimage.NODE_PACKAGE)
    if found is None or not found.submodule_search_locations:
        return None
    candidate = Path(next(iter(found.submodule_search_locations))).parent / "pyproject.toml"
    return candidate if candidate.is_file() else None


def _build_locked(
    builder: appbuilder.AppImageBuilder,
    repo: str,
    platforms: Sequence[str],
    tags: Sequence[str] | None,
    progress: appbuilder.Progress | None,
    *,
    lock_file: str,
    version: str,
    spec: Callable[[], appimage.AppSpec],
    sources: Mapping[str, bytes],
    scripts: Mapping[str, str],
) -> appbuilder.AppBuildResult:
    """One of edgefleet's own images from its wheel lock (tagged with its version)."""
    import importlib.resources

    lock = nodeimage.parse(
        importlib.resources.files("edgefleet.domain").joinpath(lock_file).read_text()
    )
    try:
        app = spec()
    except ValueError as exc:
        raise appbuilder.AppBuildError(str(exc)) from exc
    return builder.build(
        app,
        repo,
        {p: nodeimage.wheels_for(lock, p) for p in platforms},
        sources,
        scripts,
        tags=[version] if tags is None else tags,
        progress=progress or (lambda m: print(m, file=sys.stderr)),
    )


def build_node_image(
    builder: appbuilder.AppImageBuilder,
    repo: str = "edgefleet/node",
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    tags: Sequence[str] | None = None,
    progress: appbuilder.Progress | None = None,
) -> appbuilder.AppBuildResult:
    """The edge-node agent's image for ``platforms`` (tagged with its version)."""
    version = importlib.metadata.version("edgefleet-node")
    scripts = appbuilder.console_scripts("edgefleet-node", _node_pyproject())
    return _build_locked(
        builder, repo, platforms, tags, progress,
        lock_file=nodeimage.LOCK_FILE, version=version,
        spec=lambda: nodeimage.node_spec(version, scripts),
        sources=appbuilder.package_sources(nodeimage.NODE_PACKAGE), scripts=scripts,
    )  # fmt: skip


def control_plane_sources() -> dict[str, bytes]:
    """The ``edgefleet`` and ``edgefleet_node`` sources and data files the control plane
    reads at run time (locks, the serving code copied into model images), without the
    test harnesses."""
    sources: dict[str, bytes] = {}
    for package in controlplaneimage.PACKAGES:
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise appbuilder.AppBuildError(f"{package} is not an importable package")
        root = Path(next(iter(found.submodule_search_locations)))
        for path in sorted(root.rglob("*")):
            rel = f"{package}/{path.relative_to(root).as_posix()}"
            if (
                path.is_file()
                and path.suffix in (*appbuilder.SOURCE_SUFFIXES, ".json")
                and "__pycache__" not in path.parts
                and not rel.startswith(controlplaneimage.EXCLUDED_PACKAGES)
            ):
                sources[rel] = path.read_bytes()
    return sources


def build_control_plane_image(
    builder: appbuilder.AppImageBuilder,
    repo: str = "edgefleet/control-plane",
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    tags: Sequence[str] | None = None,
    progress: appbuilder.Progress | None = None,
) -> appbuilder.AppBuildResult:
    """The operator's and gateway's image for ``platforms`` (tagged with its version)."""
    version = importlib.metadata.version("edgefleet")
    root = Path(__file__).resolve().parents[3] / "pyproject.toml"
    scripts = appbuilder.console_scripts("edgefleet", root if root.is_file() else None)
    scripts = {k: v for k, v in scripts.items() if k == controlplaneimage.SCRIPT}
    return _build_locked(
        builder, repo, platforms, tags, progress,
        lock_file=controlplaneimage.LOCK_FILE, version=version,
        spec=lambda: controlplaneimage.control_plane_spec(version, scripts),
        sources=control_plane_sources(), scripts=scripts,
    )  # fmt: skip
