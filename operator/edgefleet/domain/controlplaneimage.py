"""The control plane's own image: the operator and the gateway, one image, two commands.

``edgefleet/control-plane`` is a multi-arch image (``linux/amd64``, ``linux/arm64``)
assembled like the agent's (:mod:`edgefleet.domain.appimage`): Debian bookworm's
``python3``, the wheels of ``edgefleet[control-plane]``'s dependency closure (plus
``pip``, which the operator runs to fetch a model image's runtime wheels) locked per
platform in ``control_plane_image_lock.json`` (``hack/lock-app-image.py --image
control-plane``), and the ``edgefleet`` and ``edgefleet_node`` sources — without
``edgefleet.testing``, which production code never imports.

The chart runs it as ``edgefleet operator`` and ``edgefleet gateway``, as uid/gid
:data:`UID` with a read-only root filesystem; the operator's build cache is a volume
at :data:`CACHE_DIR`.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgefleet.domain.appimage import AppSpec, OwnedDir

__all__ = [
    "CACHE_DIR",
    "EXCLUDED_PACKAGES",
    "EXTRA_REQUIREMENTS",
    "LOCK_FILE",
    "PACKAGES",
    "SCRIPT",
    "UID",
    "control_plane_spec",
]

UID = 65532
CACHE_DIR = "var/cache/edgefleet"
LOCK_FILE = "control_plane_image_lock.json"
SCRIPT = "edgefleet"
PACKAGES = ("edgefleet", "edgefleet_node")
#: Subpackages left out of the image: test harnesses (they start etcd, registries…).
EXCLUDED_PACKAGES = ("edgefleet/testing/",)
#: Besides the distribution's own dependencies: pip, run by the operator.
EXTRA_REQUIREMENTS = ("pip",)


def control_plane_spec(version: str, scripts: Mapping[str, str]) -> AppSpec:
    """The image spec for ``version``; ``scripts`` must include ``edgefleet``."""
    if SCRIPT not in scripts:
        raise ValueError(f"the edgefleet distribution declares no {SCRIPT!r} console script")
    return AppSpec(
        name="edgefleet-control-plane",
        version=version,
        entrypoint=(f"/usr/local/bin/{SCRIPT}",),
        cmd=("--help",),
        user=f"{UID}:{UID}",
        env={"EDGEFLEET_CACHE_DIR": f"/{CACHE_DIR}", "HOME": "/tmp"},  # noqa: S108
        labels={"io.edgefleet.component": "control-plane"},
        dirs=(OwnedDir(CACHE_DIR, UID, UID, 0o700),),
        description="edgefleet control plane: `edgefleet operator` and `edgefleet gateway`",
    )
