"""Kubeconfig files for the test clusters: one cluster, one user with a client
certificate, one context, all named so that ``kubectl`` needs no flags.

Used by :class:`~edgefleet.testing.controlplane.ControlPlane` (admin, controller-manager,
scheduler) and :class:`~edgefleet.testing.node.Node` (kubelet, kube-proxy).
"""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["render_kubeconfig"]


def render_kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> str:
    """A kubeconfig (YAML) for ``user`` at ``server``, trusting ``ca``."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "edgefleet-local",
                    "cluster": {"server": server, "certificate-authority": str(ca)},
                }
            ],
            "users": [
                {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
            ],
            "contexts": [
                {"name": "edgefleet-local", "context": {"cluster": "edgefleet-local", "user": user}}
            ],
            "current-context": "edgefleet-local",
        }
    )
