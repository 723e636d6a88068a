"""A one-node Kubernetes cluster for the tests that need pods to run.

Grows a :class:`~edgefleet.testing.controlplane.ControlPlane` (started with
``node_ip``) into a cluster: kubelet, containerd (with Debian's runc and CNI plugins)
and kube-proxy run inside a network **and** mount namespace this harness creates, so
they change nothing on the host: the node address (on a veth pair kept inside), the pod bridge,
the Service rules (iptables in that namespace), pod network namespaces and the masked
sysctls exist only there. The API server and the OCI registry stay on the host's
loopback; :mod:`edgefleet.testing.nsforward` makes them appear at the same
``127.0.0.1`` addresses inside (and at the node address, for pods), so image
references are identical on both sides and pods reach the API server through the
``kubernetes`` Service. Pods pull from the local TLS registry through containerd's
``certs.d``; the sandbox (pause) image and the host-side chores (cgroups, shims)
are in :mod:`edgefleet.testing.nodehost`.

Facts this relies on (DESIGN.md §7): on cgroup v1 kubelet needs ``failCgroupV1:
false`` and the cgroupfs driver; without CAP_SYS_RESOURCE containerd needs
``restrict_oom_score_adj``; kubelet writes host sysctls unless they already match, so
they are masked inside the mount namespace.

    with Node(control_plane, registry) as node:
        node.wait_ready()
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from edgefleet.clients.registry import RegistryClient
from edgefleet.testing import nodehost
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.kubeconfig import render_kubeconfig
from edgefleet.testing.lifecycle import Harness
from edgefleet.testing.procs import Service, ServiceError, free_port, wait_until
from edgefleet.testing.registry import LocalRegistry
from edgefleet.testing.tools import node_binary

__all__ = ["NODE_IP", "POD_CIDR", "Node", "node_unavailable"]

NODE_IP = "10.88.0.1"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/24"  # the control plane's --service-cluster-ip-range
NODE_NAME = "edgefleet-node-0"
_MASKED_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")


def node_unavailable() -> str | None:
    """Why a node cannot run here, or None."""
    if os.geteuid() != 0:
        return "the one-node cluster needs root (namespaces, mounts, cgroups)"
    for tool in ("unshare", "nsenter", "ip", "iptables", "runc", "gcc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (hack/system-deps.sh installs it)"
    if not Path("/usr/lib/cni/bridge").exists():
        return "CNI plugins are not installed (Debian containernetworking-plugins)"
    return None


class Node(Harness):
    """kubelet + containerd + kube-proxy in namespaces of their own, joined to ``cp``."""

    def __init__(
        self,
        cp: ControlPlane,
        registry: LocalRegistry,
        *,
        timeout: float = 120,
        forward_ports: tuple[int, ...] = (),
    ) -> None:
        """``forward_ports``: more host loopback ports to make reachable inside, at
        127.0.0.1 and at the node address (a file server, a wheel mirror…)."""
        self.forward_ports = forward_ports
        if cp.node_ip != NODE_IP:
            raise ValueError(f"start the ControlPlane with node_ip={NODE_IP!r}")
        self.cp = cp
        self.registry = registry
        self.dir = Path(tempfile.mkdtemp(prefix="edgefleet-node-"))
        self.dir.chmod(0o700)
        self.cgroup_root = f"/edgefleet-{self.dir.name.rsplit('-', 1)[-1]}"
        self._timeout = timeout
        self._services: list[Service] = []
        self._holder: Service | None = None
        self.kubelet_port = free_port()

    # -- lifecycle -------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self._holder is not None
        return self._holder.process.pid

    def run_inside(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in the node's network and mount namespaces."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "--net", "--mount", "--", *argv],
            capture_output=True, text=True, check=check, timeout=60,
        )  # fmt: skip

    def _spawn(
        self, name: str, argv: list[str], inside: bool = True, env: dict[str, str] | None = None
    ) -> Service:
        prefix = ["nsenter", "-t", str(self.pid), "--net", "--mount", "--"] if inside else []
        service = Service(name, [*prefix, *argv], self.dir / f"{name}.log", env=env)
        self._services.append(service)
        return service

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        with RegistryClient(self.registry.url, ca_bundle=self.registry.ca_path) as client:
            pause = nodehost.push_pause_image(client)
        # The namespaces: a holder process that unshared them and sleeps.
        self._holder = Service(
            "namespaces",
            ["unshare", "--net", "--mount", "--propagation", "private", "--fork",
             "--kill-child=SIGKILL", "sleep", "infinity"],
            self.dir / "namespaces.log",
        )  # fmt: skip
        wait_until(
            lambda: os.readlink(f"/proc/{self.pid}/ns/net") != os.readlink("/proc/self/ns/net"),
            timeout=10, what="the node's namespaces", alive=self._holder.check_alive,
        )  # fmt: skip
        self._setup_namespaces()
        regport = self.registry.port
        forward = self._spawn(
            "nsforward",
            [
                sys.executable, "-m", "edgefleet.testing.nsforward",
                "--netns", f"/proc/{self.pid}/ns/net",
                f"127.0.0.1:{self.cp.port}=127.0.0.1:{self.cp.port}",
                f"{NODE_IP}:{self.cp.port}=127.0.0.1:{self.cp.port}",
                *(
                    f"{address}:{port}=127.0.0.1:{port}"
                    for port in (regport, *self.forward_ports)
                    for address in ("127.0.0.1", NODE_IP)
                ),
            ],
            inside=False,
        )  # fmt: skip
        wait_until(lambda: "ready" in forward.log_tail(5), timeout=20, what="nsforward",
                   alive=forward.check_alive)  # fmt: skip
        self._start_containerd(pause)
        self._start_kubelet()
        self._start_kube_proxy()

    def stop(self) -> None:
        """Stop everything, remove pods' cgroups and the directory; idempotent."""
        while self._services:
            self._services.pop().stop()
        if self._holder is not None:
            self._holder.stop()
            self._holder = None
        nodehost.kill_shims(str(self.dir))
        nodehost.remove_cgroups(self.cgroup_root)
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-R", str(self.dir)], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- pieces ----------------------------------------------------------------------
    def _setup_namespaces(self) -> None:
        masks = self.dir / "sysctl-masks"
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
        self.run_inside("sh", "-c", "\n".join(script))

    def _start_containerd(self, pause: str) -> None:
        d = self.dir
        certs = d / "certs.d" / self.registry.host
        certs.mkdir(parents=True)
        shutil.copy(self.registry.ca_path, certs / "ca.crt")
        (certs / "hosts.toml").write_text(
            f'server = "https://{self.registry.host}"\n\n'
            f'[host."https://{self.registry.host}"]\n'
            f'  capabilities = ["pull", "resolve"]\n  ca = "{certs / "ca.crt"}"\n'
        )
        cni_conf = d / "cni"
        cni_conf.mkdir()
        (cni_conf / "10-edgefleet.conflist").write_text(
            json.dumps(
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
                                "dataDir": str(d / "ipam"),
                                "ranges": [[{"subnet": POD_CIDR}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                }
            )
        )
        self.containerd_sock = d / "containerd.sock"
        config = f"""version = 3
root = "{d / "containerd-root"}"
state = "{d / "containerd-state"}"
[grpc]
  address = "{self.containerd_sock}"
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
        (d / "containerd.toml").write_text(config)
        # containerd finds its runc shim on PATH (and runc from Debian in /usr/sbin).
        shim_dir = str(Path(node_binary("containerd-shim-runc-v2")).parent)
        env = {**os.environ, "PATH": f"{shim_dir}:{os.environ.get('PATH', '')}"}
        containerd = self._spawn(
            "containerd", [node_binary("containerd"), "--config", str(d / "containerd.toml")],
            env=env,
        )  # fmt: skip
        wait_until(self.containerd_sock.exists, timeout=self._timeout, what="containerd socket",
                   alive=containerd.check_alive)  # fmt: skip

    def _start_kubelet(self) -> None:
        d, cp = self.dir, self.cp
        nodehost.make_cgroup_root(self.cgroup_root)
        cp.ca.issue(f"system:node:{NODE_NAME}", organizations=("system:nodes",), client=True).write(
            d, "kubelet"
        )
        server = f"https://127.0.0.1:{cp.port}"
        (d / "kubelet.kubeconfig").write_text(
            render_kubeconfig(server, cp.ca_path, d / "kubelet.crt", d / "kubelet.key", "kubelet")
        )
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "containerRuntimeEndpoint": f"unix://{self.containerd_sock}",
            "address": NODE_IP,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(cp.ca_path)},
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
        (d / "kubelet.yaml").write_text(yaml.safe_dump(config))
        self._spawn(
            "kubelet",
            [
                node_binary("kubelet"),
                f"--config={d / 'kubelet.yaml'}",
                f"--kubeconfig={d / 'kubelet.kubeconfig'}",
                f"--root-dir={d / 'kubelet'}",
                f"--cert-dir={d / 'kubelet-pki'}",
                f"--node-ip={NODE_IP}",
                f"--hostname-override={NODE_NAME}",
            ],
        )

    def _start_kube_proxy(self) -> None:
        d, cp = self.dir, self.cp
        cp.ca.issue("system:kube-proxy", client=True).write(d, "kube-proxy")
        (d / "kube-proxy.kubeconfig").write_text(
            render_kubeconfig(f"https://127.0.0.1:{cp.port}", cp.ca_path, d / "kube-proxy.crt",
                              d / "kube-proxy.key", "kube-proxy")
        )  # fmt: skip
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(d / "kube-proxy.kubeconfig")},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "iptables": {"masqueradeAll": True},
            "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s"},
        }  # fmt: skip
        (d / "kube-proxy.yaml").write_text(yaml.safe_dump(config))
        self._spawn("kube-proxy", [node_binary("kube-proxy"), f"--config={d / 'kube-proxy.yaml'}"])

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the Node reports Ready."""

        def ready() -> bool:
            out = self.cp.kubectl(
                "get", "node", NODE_NAME, "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}', check=False,
            )  # fmt: skip
            return out.stdout.strip() == "True"

        wait_until(ready, timeout=timeout or self._timeout, interval=0.5,
                   what=f"node {NODE_NAME} Ready", alive=self.check_alive)  # fmt: skip

    def check_alive(self) -> None:
        """Raise :class:`ServiceError` with its log tail if a node component died."""
        for service in self._services:
            service.check_alive()

    def pod_logs(self, namespace: str, pod_prefix: str, lines: int = 80) -> str:
        """The container logs of pods whose name starts with ``pod_prefix`` (read from
        the node's log directory: the API server cannot reach the kubelet inside)."""
        out = []
        for path in sorted((self.dir / "pod-logs").glob(f"{namespace}_{pod_prefix}*/*/*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"== {path.relative_to(self.dir)}\n" + "\n".join(text))
        return "\n".join(out)

    def logs(self, name: str, lines: int = 60) -> str:
        for s in self._services:
            if s.name == name:
                return s.log_tail(lines)
        raise ServiceError(f"no service {name}")
