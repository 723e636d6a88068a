"""Fixtures for the tests that run pods: a control plane prepared for a node, and the
one-node cluster (kubelet, containerd, kube-proxy in namespaces of their own). It
starts only when a test here asks for it, once per module, and stops after it (it
holds a few hundred MB the other tests should have)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.node import NODE_IP, Node, node_unavailable


@pytest.fixture(scope="module")
def cluster_cp() -> Iterator[ControlPlane]:
    reason = node_unavailable()
    if reason:
        pytest.skip(reason)
    with ControlPlane(node_ip=NODE_IP) as cp:
        yield cp


@pytest.fixture(scope="module")
def cluster(cluster_cp, registry, base_index) -> Iterator[Node]:
    with Node(cluster_cp, registry) as node:
        node.wait_ready()
        yield node
