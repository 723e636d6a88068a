"""Fixtures for the tests that run pods: a control plane prepared for a node, and the
one-node cluster (kubelet, containerd, kube-proxy in namespaces of their own). It
starts only when a test here asks for it, once per module, and stops after it (it
holds a few hundred MB the other tests should have).

``EDGEFLEET_E2E_CLUSTER=kind`` runs the same tests against a kind cluster instead
(:mod:`edgefleet.testing.kind`; needs Docker, the kind CLI and kind's node image):
:func:`open_cluster` gives either behind one interface."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgefleet.testing import kind
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.node import NODE_IP, Node, node_unavailable
from edgefleet.testing.registry import LocalRegistry


@pytest.fixture(scope="module")
def cluster_cp() -> Iterator[ControlPlane | None]:
    """The harness's control plane; None under kind, which brings its own."""
    if kind.selected():
        reason = kind.kind_unavailable()
        if reason:
            pytest.skip(f"EDGEFLEET_E2E_CLUSTER=kind: {reason}")
        yield None
        return
    reason = node_unavailable()
    if reason:
        pytest.skip(reason)
    with ControlPlane(node_ip=NODE_IP) as cp:
        yield cp


def open_cluster(
    cp: ControlPlane | None, registry: LocalRegistry, forward_ports: tuple[int, ...] = ()
) -> Node | kind.KindCluster:
    """The cluster to run pods on (a context manager): the harness's node joined to
    ``cp``, or a kind cluster when ``EDGEFLEET_E2E_CLUSTER=kind``."""
    if cp is None:
        return kind.KindCluster(registry, forward_ports=forward_ports)
    return Node(cp, registry, forward_ports=forward_ports)


@pytest.fixture(scope="module")
def cluster(cluster_cp, registry, base_index) -> Iterator[Node | kind.KindCluster]:
    with open_cluster(cluster_cp, registry) as node:
        node.wait_ready()
        yield node


def harness_only(what: str) -> None:
    """Skip a check that is about the harness's own node, not about Kubernetes."""
    if kind.selected():
        pytest.skip(f"harness-specific ({what}); not checked on kind")
