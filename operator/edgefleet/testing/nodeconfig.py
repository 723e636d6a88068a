"""The configuration the one-node cluster's components run from, as text or dicts:
the namespace set-up script, containerd's ``config.toml`` and registry ``certs.d``,
the CNI bridge conflist, the KubeletConfiguration and the KubeProxyConfiguration.

Pure renderers of the node's directory, addresses and ports (only
:func:`namespace_script` reads the host's sysctls to mask them); the process
lifecycle that writes and uses them is :class:`~edgefleet.testing.node.Node`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edgefleet.testing.controlplane_args import SERVICE_CIDR

__all__ = [
    "NODE_IP",
    "NODE_NAME",
    "POD_CIDR",
    "SERVICE_CIDR",
    "cni_conflist",
    "containerd_toml",
    "kube_proxy_config",
    "kubelet_config",
    "namespace_script",
    "write_registry_hosts",
]

NODE_IP = "10.88.0.1"
POD_CIDR = "10.244.0.0/24"
NODE_NAME = "edgefleet-node-0"
_MASKED_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")


def namespace_script(masks: Path) -> str:
    """A shell script, run inside the node's namespaces, that gives them the node
    address, routes, forwarding, private ``/run/netns`` and ``/var/lib/cni``, and masks
    the sysctls kubelet would write with copies of their values kept in ``masks``."""
    masks.mkdir()
    script = [
        "set -e",
        "ip link set lo up",
        # The node's address on a veth pair whose both ends stay inside (this kernel
        # has no dummy interfaces); it must not be a loopback address.
        "ip link add ef-node0 type veth peer name ef-node1",
        f"ip addr add {NODE_IP}/32 dev ef-node0",
        "ip link set ef-node0 up",
        "ip link set ef-node1 up",
        # Service addresses are routable from the node itself, as on a real node
        # (whose default route kube-proxy's OUTPUT rules then rewrite).
        f"ip route add {SERVICE_CIDR} dev ef-node0",
        "sysctl -qw net.ipv4.ip_forward=1",
        "mkdir -p /run/netns /var/lib/cni",
        "mount -t tmpfs tmpfs /run/netns",
        "mount --make-shared /run/netns || true",
        "mount -t tmpfs tmpfs /var/lib/cni",
    ]
    for name in _MASKED_SYSCTLS:
        value = Path("/proc/sys", name).read_text()
        fake = masks / name.replace("/", ".")
        fake.write_text(value)
        script.append(f"mount --bind {fake} /proc/sys/{name}")
    return "\n".join(script)


def write_registry_hosts(certs_d: Path, registry_host: str, ca_path: Path) -> None:
    """containerd's ``certs.d/<host>/`` for the local TLS registry: its CA and a
    ``hosts.toml`` that pulls from it."""
    certs = certs_d / registry_host
    certs.mkdir(parents=True)
    shutil.copy(ca_path, certs / "ca.crt")
    (certs / "hosts.toml").write_text(
        f'server = "https://{registry_host}"\n\n'
        f'[host."https://{registry_host}"]\n'
        f'  capabilities = ["pull", "resolve"]\n  ca = "{certs / "ca.crt"}"\n'
    )


def cni_conflist(ipam_dir: Path) -> str:
    """The pod network: a masquerading bridge with host-local IPAM over ``POD_CIDR``."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "edgefleet",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "ef-cni0",
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(ipam_dir),
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
    )


def containerd_toml(d: Path, socket: Path, cni_conf: Path, pause: str) -> str:
    """containerd's config (version 3): state under ``d``, the CRI plugin with
    ``restrict_oom_score_adj``, CNI from ``cni_conf``, the sandbox image ``pause`` and
    registry hosts from ``d/certs.d``."""
    return f"""version = 3
root = "{d / "containerd-root"}"
state = "{d / "containerd-state"}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.images"]
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{d / "certs.d"}"
"""


def kubelet_config(
    d: Path,
    *,
    cgroup_root: str,
    containerd_socket: Path,
    port: int,
    healthz_port: int,
    client_ca: Path,
) -> dict[str, Any]:
    """The KubeletConfiguration: cgroup v1 with cgroupfs, webhook authn/authz, pod
    logs under ``d`` (not the host's ``/var/log/pods``), eviction all but off."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "containerRuntimeEndpoint": f"unix://{containerd_socket}",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "failSwapOn": False,
        "protectKernelDefaults": False,
        "resolvConf": "/etc/resolv.conf",
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "serializeImagePulls": False,
        "podCIDR": POD_CIDR,
        "podLogsDir": str(d / "pod-logs"),  # not the host's /var/log/pods
        "localStorageCapacityIsolation": False,
    }  # fmt: skip


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    """The KubeProxyConfiguration: iptables mode on the node address, conntrack
    left alone (its sysctls are the host's)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "iptables": {"masqueradeAll": True},
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }  # fmt: skip
