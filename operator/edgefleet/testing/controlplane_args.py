"""The command lines of the control-plane components as
:class:`~edgefleet.testing.controlplane.ControlPlane` starts them: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, all on 127.0.0.1.

Pure functions of paths and ports; ``node_ip`` (a control plane for the one-node
cluster, :mod:`edgefleet.testing.node`) switches on the Node authorizer, ServiceAccount
admission, the lease endpoint reconciler and the controllers that turn Deployments into
Pods. Every file named here lives in the control plane's directory ``d``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "SERVICE_CIDR",
    "apiserver_argv",
    "controller_manager_argv",
    "etcd_argv",
    "scheduler_argv",
]

SERVICE_CIDR = "10.96.0.0/24"  # --service-cluster-ip-range; its first address is 10.96.0.1


def etcd_argv(binary: str, d: Path, client_port: int, peer_port: int) -> list[str]:
    """A single-member etcd without fsync (test data only) in ``d/etcd-data``."""
    etcd_url = f"http://127.0.0.1:{client_port}"
    return [
        binary,
        "--name=default",
        f"--data-dir={d / 'etcd-data'}",
        f"--listen-client-urls={etcd_url}",
        f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_argv(
    binary: str, d: Path, port: int, etcd_url: str, node_ip: str | None
) -> list[str]:
    """kube-apiserver on ``127.0.0.1:port`` with the per-run CA, certificates and
    ServiceAccount key pair in ``d``."""
    node_flags = (
        [
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--advertise-address=127.0.0.1",
            "--authorization-mode=RBAC",
        ]
        if node_ip is None
        else [
            "--enable-admission-plugins=NodeRestriction",
            "--endpoint-reconciler-type=lease",
            f"--advertise-address={node_ip}",
            "--authorization-mode=Node,RBAC",
            f"--kubelet-client-certificate={d / 'kubelet-client.crt'}",
            f"--kubelet-client-key={d / 'kubelet-client.key'}",
        ]
    )
    return [
        binary,
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={d / 'apiserver-certs'}",
        f"--tls-cert-file={d / 'apiserver.crt'}",
        f"--tls-private-key-file={d / 'apiserver.key'}",
        f"--client-ca-file={d / 'ca.crt'}",
        f"--service-account-key-file={d / 'sa.pub'}",
        f"--service-account-signing-key-file={d / 'sa.key'}",
        f"--service-account-issuer=https://127.0.0.1:{port}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        *node_flags,
    ]


def controller_manager_argv(
    binary: str, d: Path, kubeconfig: Path, secure_port: int, node_ip: str | None
) -> list[str]:
    """kube-controller-manager with only the controllers the tests need."""
    controllers = ["garbage-collector-controller", "namespace-controller"]
    extra: list[str] = []
    if node_ip is not None:
        controllers += [
            "serviceaccount-controller",
            "root-ca-certificate-publisher-controller",
            "deployment-controller",
            "replicaset-controller",
            "endpointslice-controller",
            "disruption-controller",
            "node-lifecycle-controller",  # lifts the not-ready taint once Ready
        ]
        extra = [f"--root-ca-file={d / 'ca.crt'}"]
    return [
        binary,
        f"--kubeconfig={kubeconfig}",
        "--controllers=" + ",".join(controllers),
        *extra,
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={secure_port}",
        f"--cert-dir={d / 'kcm-certs'}",
        "--use-service-account-credentials=true",  # per-controller RBAC roles
    ]


def scheduler_argv(binary: str, kubeconfig: Path, secure_port: int) -> list[str]:
    """kube-scheduler (only with a node), authenticating with its own kubeconfig."""
    return [
        binary,
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={secure_port}",
    ]
