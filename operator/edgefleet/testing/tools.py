"""The pinned tool binaries (etcd, kube-apiserver, kube-controller-manager, kubectl,
helm, cosign): from ``EDGEFLEET_<TOOL>`` variables, else from ``hack/tools.sh``, which
builds or downloads whatever is missing, once, into its cache outside the repo."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgefleet.testing.procs import ServiceError

__all__ = ["Tools", "find_tools", "node_binary"]

_TOOL_NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm", "cosign")


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the pinned binaries."""

    etcd: str
    kube_apiserver: str
    kube_controller_manager: str
    kubectl: str
    helm: str
    cosign: str


def _repo_root() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        if (parent / "hack" / "tools.sh").is_file():
            return parent
    return None


def find_tools() -> Tools:
    """Paths from ``EDGEFLEET_<TOOL>`` variables, else from ``hack/tools.sh env``.

    ``hack/tools.sh`` builds (or downloads) whatever is missing, once, into its cache.
    """
    env_names = {n: "EDGEFLEET_" + n.upper().replace("-", "_") for n in _TOOL_NAMES}
    found = {n: os.environ.get(v, "") for n, v in env_names.items()}
    if not all(found.values()):
        root = _repo_root()
        if root is None:
            missing = ", ".join(v for n, v in env_names.items() if not found[n])
            raise ServiceError(f"set {missing} to the tool binaries, or run from a checkout")
        out = subprocess.run(
            [str(root / "hack" / "tools.sh"), "env"], check=True, capture_output=True, text=True
        ).stdout
        pairs = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        found = {n: found[n] or pairs[env_names[n]] for n in _TOOL_NAMES}
    return Tools(
        etcd=found["etcd"],
        kube_apiserver=found["kube-apiserver"],
        kube_controller_manager=found["kube-controller-manager"],
        kubectl=found["kubectl"],
        helm=found["helm"],
        cosign=found["cosign"],
    )


def node_binary(name: str) -> str:
    """A binary of the node or flux sets (kubelet, containerd, source-controller, …):
    from ``EDGEFLEET_<NAME>``, else ``hack/tools.sh path <name>`` (built once, cached)."""
    override = os.environ.get("EDGEFLEET_" + name.upper().replace("-", "_"), "")
    if override:
        return override
    root = _repo_root()
    if root is None:
        raise ServiceError(
            f"set EDGEFLEET_{name.upper().replace('-', '_')}, or run from a checkout"
        )
    return subprocess.run(
        [str(root / "hack" / "tools.sh"), "path", name], check=True, capture_output=True, text=True
    ).stdout.strip()
