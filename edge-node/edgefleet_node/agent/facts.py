"""What a device says about itself: architecture, OS, memory, disk, agent version."""

from __future__ import annotations

import os
import platform as _platform
import shutil
from pathlib import Path

from edgefleet_node.protocol.report import Facts

__all__ = ["AGENT_VERSION", "detect_platform", "gather"]

AGENT_VERSION = "0.1.0"

_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm/v7",
    "armv6l": "arm/v6",
}


def detect_platform() -> str:
    """The OCI platform of this machine, e.g. ``linux/arm64``."""
    machine = _platform.machine().lower()
    return f"linux/{_ARCH.get(machine, machine)}"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')[:128]
    except OSError:
        pass
    return f"{_platform.system()} {_platform.release()}"[:128]


def _memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def gather(state_root: Path, platform: str) -> Facts:
    return Facts(
        architecture=_platform.machine()[:32] or None,
        os=_os_name(),
        memory_bytes=_memory(),
        disk_free_bytes=shutil.disk_usage(state_root).free,
        agent_version=AGENT_VERSION,
        platform=platform,
    )
