"""The edge-node agent's own image: what it contains, who it runs as, and its lock.

``edgefleet-node`` ships as a multi-arch image (``linux/amd64``, ``linux/arm64``)
assembled by :mod:`edgefleet.domain.appimage`: Debian bookworm's ``python3``, the
wheels of ``edgefleet-node``'s dependency closure for each platform — exact
files locked by name, size and sha256 in ``node_image_lock.json`` beside this module
(``hack/lock-app-image.py`` regenerates it) — and the ``edgefleet_node`` sources.

It runs as uid/gid :data:`AGENT_UID` (no name in ``/etc/passwd`` needed), entrypoint
``edgefleet-node run``, state in :data:`STATE_DIR` (a volume; the image creates the
mount point owned by the agent, mode 0700, so a fresh named volume inherits that).
The agent drives the host's Docker engine, so it needs the socket: run it with
``--group-add <gid of /var/run/docker.sock>`` rather than as root. That group is
root-equivalent on the host (whoever talks to dockerd can start a privileged
container); the image being non-root limits what a bug in the agent's own process can
touch directly, not what the socket allows.
"""

from __future__ import annotations

from collections.abc import Mapping

from edgefleet.domain.appimage import AppSpec, OwnedDir
from edgefleet.domain.runtime_lock import LockedWheel, RuntimeLock, parse_lock

__all__ = [
    "AGENT_UID",
    "LOCK_FILE",
    "NODE_EXTRAS",
    "NODE_PACKAGE",
    "NODE_SCRIPT",
    "STATE_DIR",
    "node_spec",
    "parse",
    "wheels_for",
]

AGENT_UID = 65532
STATE_DIR = "var/lib/edgefleet-node"
LOCK_FILE = "node_image_lock.json"
NODE_PACKAGE = "edgefleet_node"
NODE_SCRIPT = "edgefleet-node"
NODE_EXTRAS: tuple[str, ...] = ()  # the Docker client is the standard library's


def node_spec(version: str, scripts: Mapping[str, str]) -> AppSpec:
    """The image spec for agent ``version``; ``scripts`` are the distribution's
    console scripts, which must include ``edgefleet-node``."""
    if NODE_SCRIPT not in scripts:
        raise ValueError(
            f"the edgefleet-node distribution declares no {NODE_SCRIPT!r} console script "
            f"(found {sorted(scripts)})"
        )
    return AppSpec(
        name="edgefleet-node",
        version=version,
        entrypoint=(f"/usr/local/bin/{NODE_SCRIPT}",),
        cmd=("run",),
        user=f"{AGENT_UID}:{AGENT_UID}",
        env={"EDGEFLEET_NODE_STATE_DIR": f"/{STATE_DIR}"},
        labels={"io.edgefleet.component": "edge-node"},
        dirs=(OwnedDir(STATE_DIR, AGENT_UID, AGENT_UID, 0o700),),
        description="edgefleet edge-node agent (runs models on the device's Docker engine)",
    )


def wheels_for(lock: RuntimeLock, platform: str) -> tuple[LockedWheel, ...]:
    """The locked wheels of ``platform``; KeyError names the platforms the lock has."""
    try:
        return lock.platforms[platform]
    except KeyError:
        raise KeyError(
            f"the node image lock has no {platform}; it has {sorted(lock.platforms)}: "
            "run hack/lock-app-image.py"
        ) from None


def parse(text: str) -> RuntimeLock:
    """Parse ``node_image_lock.json`` (the runtime lock's format)."""
    return parse_lock(text)
