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
are in :mod:`edgefleet.testing.nodehost`, the components' configuration files in
:mod:`edgefleet.testing.nodeconfig`.

Facts this relies on (DESIGN.md §7): on cgroup v1 kubelet needs ``failCgroupV1:
false`` and the cgroupfs driver; without CAP_SYS_RESOURCE containerd needs
``restrict_oom_score_adj``; kubelet writes host sysctls unless they already match, so
they are masked inside the mount namespace.

    with Node(control_plane, registry) as node:
        node.wait_ready()
"""

from __future__ import annotations

import contextlib
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
from edgefleet.testing.nodeconfig import (
    NODE_IP,
    NODE_NAME,
    POD_CIDR,
    cni_conflist,
    containerd_toml,
    kube_proxy_config,
    kubelet_config,
    namespace_script,
    write_registry_hosts,
)
from edgefleet.testing.procs import Service, ServiceError, free_port, wait_until
from edgefleet.testing.registry import LocalRegistry
from edgefleet.testing.tools import node_binary

__all__ = ["NODE_IP", "POD_CIDR", "Node", "node_unavailable"]


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
        self.run_inside("sh", "-c", namespace_script(self.dir / "sysctl-masks"))

    def _start_containerd(self, pause: str) -> None:
        d = self.dir
        write_registry_hosts(d / "certs.d", self.registry.host, self.registry.ca_path)
        cni_conf = d / "cni"
        cni_conf.mkdir()
        (cni_conf / "10-edgefleet.conflist").write_text(cni_conflist(d / "ipam"))
        self.containerd_sock = d / "containerd.sock"
        (d / "containerd.toml").write_text(
            containerd_toml(d, self.containerd_sock, cni_conf, pause)
        )
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
        config = kubelet_config(
            d,
            cgroup_root=self.cgroup_root,
            containerd_socket=self.containerd_sock,
            port=self.kubelet_port,
            healthz_port=free_port(),
            client_ca=cp.ca_path,
        )
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
        config = kube_proxy_config(d / "kube-proxy.kubeconfig", free_port(), free_port())
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
