"""What the registry harness needs installed on this host, and why it cannot start
when something is missing: the distribution server (Debian's ``docker-registry``) and,
for basic auth, ``htpasswd`` (apache2-utils); ``hack/system-deps.sh`` installs both.
Used by :mod:`edgefleet.testing.registry` and its fixtures (to skip, not fail).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["find_registry_binary", "registry_unavailable"]

_DEFAULT_BINARY = "/usr/bin/docker-registry"


def find_registry_binary() -> str | None:
    """``$EDGEFLEET_DOCKER_REGISTRY``, Debian's ``/usr/bin/docker-registry``, or PATH."""
    configured = os.environ.get("EDGEFLEET_DOCKER_REGISTRY")
    if configured:
        return configured if Path(configured).is_file() else None
    if Path(_DEFAULT_BINARY).is_file():
        return _DEFAULT_BINARY
    return shutil.which("docker-registry") or shutil.which("registry")


def registry_unavailable(auth: bool = False) -> str | None:
    """Why a registry cannot start here, or ``None`` when it can (for ``pytest.skip``)."""
    if find_registry_binary() is None:
        return (
            "the distribution server is not installed (Debian package docker-registry); "
            "run hack/system-deps.sh"
        )
    if auth and shutil.which("htpasswd") is None:
        return "htpasswd is not installed (Debian package apache2-utils); run hack/system-deps.sh"
    return None
