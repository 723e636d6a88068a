"""A kind cluster behind the same interface as the harness's one-node cluster.

For users with Docker and internet access: ``EDGEFLEET_E2E_CLUSTER=kind`` makes the
cluster tests (``tests/cluster/``) create a kind cluster with the ``kind`` CLI instead
of starting :class:`~edgefleet.testing.node.Node`, and delete it afterwards. The tests
see the same things either way:

* ``cluster.cp``: ``kubectl(...)``, ``kubeconfig`` and ``tools.helm`` (the pinned
  kubectl and helm from ``hack/tools.sh``, pointed at kind's kubeconfig);
* host services at the same addresses: the local TLS registry and any
  ``forward_ports`` appear inside the kind node's network namespace at ``127.0.0.1``
  and at :data:`~edgefleet.testing.node.NODE_IP` (an address this class adds there on
  a veth pair, as the harness does), by :mod:`edgefleet.testing.nsforward`. So image
  references (``127.0.0.1:<port>/…``) are identical on both sides: kind's containerd
  pulls them through ``certs.d`` (the registry's CA mounted into the node), pods reach
  the registry at ``https://10.88.0.1:<port>``, which its certificate already names;
* ``run_inside(...)``: a host command in the kind node's network namespace (where
  Service and node addresses exist), ``wait_ready()``, ``check_alive()``,
  ``pod_logs(...)``.

Needs root (nsenter into the node container's network namespace), Docker, a ``kind``
binary on PATH, and kind's node image (``kindest/node``, from Docker Hub) — pulled on
first use unless ``EDGEFLEET_KIND_NODE_IMAGE`` names one present locally.
:func:`kind_unavailable` says which of these is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgefleet.testing.lifecycle import Harness
from edgefleet.testing.node import NODE_IP
from edgefleet.testing.procs import Service, ServiceError, wait_until
from edgefleet.testing.registry import LocalRegistry
from edgefleet.testing.tools import Tools, find_tools

__all__ = ["ENV", "NODE_IMAGE_ENV", "KindCluster", "kind_unavailable", "selected"]

ENV = "EDGEFLEET_E2E_CLUSTER"
NODE_IMAGE_ENV = "EDGEFLEET_KIND_NODE_IMAGE"
_HUB = ("registry-1.docker.io", 443)


def selected() -> bool:
    """Whether the user asked for kind (``EDGEFLEET_E2E_CLUSTER=kind``)."""
    return os.environ.get(ENV, "harness") == "kind"


def _docker_ok() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
    return None if done.returncode == 0 else f"docker info failed: {done.stderr.strip()[:200]}"


def kind_unavailable() -> str | None:
    """Why a kind cluster cannot be made here (every reason found), or None."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("needs root (nsenter into the kind node's network namespace)")
    if shutil.which("kind") is None:
        reasons.append("no kind binary on PATH (go install sigs.k8s.io/kind@v0.30.0)")
    if (problem := _docker_ok()) is not None:
        reasons.append(problem)
    image = os.environ.get(NODE_IMAGE_ENV)
    local = image and subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                                     check=False, timeout=30).returncode == 0  # fmt: skip
    if not local:
        try:
            socket.create_connection(_HUB, timeout=5).close()
        except OSError as exc:
            reasons.append(
                f"kind's node image (kindest/node) comes from Docker Hub, which this network "
                f"cannot reach ({_HUB[0]}: {exc}); set {NODE_IMAGE_ENV} to a local image"
            )
    return "; ".join(reasons) or None


@dataclass
class KindControlPlane:
    """The part of :class:`~edgefleet.testing.controlplane.ControlPlane` tests use."""

    kubeconfig: Path
    tools: Tools

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.tools.kubectl, f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text, capture_output=True, text=True, check=check, timeout=120,
        )  # fmt: skip


class KindCluster(Harness):
    """``kind create cluster`` … ``kind delete cluster``, wired to the local registry."""

    def __init__(
        self,
        registry: LocalRegistry,
        *,
        name: str = "edgefleet-e2e",
        forward_ports: tuple[int, ...] = (),
        timeout: float = 300,
    ) -> None:
        self.registry = registry
        self.name = name
        self.forward_ports = forward_ports
        self.dir = Path(tempfile.mkdtemp(prefix="edgefleet-kind-"))
        self.cp = KindControlPlane(self.dir / "kubeconfig", find_tools())
        self._timeout = timeout
        self._forward: Service | None = None
        self._pid = 0

    @property
    def container(self) -> str:
        return f"{self.name}-control-plane"

    def _kind(self, *args: str) -> None:
        subprocess.run(["kind", *args, "--name", self.name, f"--kubeconfig={self.cp.kubeconfig}"],
                       check=True, timeout=self._timeout)  # fmt: skip

    def start(self) -> None:
        host = self.registry.host
        certs = self.dir / "certs.d" / host
        certs.mkdir(parents=True)
        shutil.copy(self.registry.ca_path, certs / "ca.crt")
        (certs / "hosts.toml").write_text(
            f'server = "https://{host}"\n\n[host."https://{host}"]\n'
            f'  capabilities = ["pull", "resolve"]\n'
            f'  ca = "/etc/containerd/certs.d/{host}/ca.crt"\n'
        )
        config = {
            "kind": "Cluster",
            "apiVersion": "kind.x-k8s.io/v1alpha4",
            "containerdConfigPatches": [
                '[plugins."io.containerd.grpc.v1.cri".registry]\n'
                '  config_path = "/etc/containerd/certs.d"'
            ],
            "nodes": [{"role": "control-plane", "extraMounts": [{
                "hostPath": str(self.dir / "certs.d"),
                "containerPath": "/etc/containerd/certs.d", "readOnly": True}]}],
        }  # fmt: skip
        (self.dir / "kind.json").write_text(json.dumps(config))  # JSON is YAML
        image = os.environ.get(NODE_IMAGE_ENV)
        extra = [f"--image={image}"] if image else []
        self._kind("create", "cluster", f"--config={self.dir / 'kind.json'}",
                   f"--wait={int(self._timeout)}s", *extra)  # fmt: skip
        pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", self.container],
                             capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
        self._pid = int(pid.stdout.strip())
        # The harness's node address, on a veth pair kept inside the node's namespace.
        self.run_inside("sh", "-c", "set -e; ip link add ef-node0 type veth peer name ef-node1; "
                        f"ip addr add {NODE_IP}/32 dev ef-node0; ip link set ef-node0 up; "
                        "ip link set ef-node1 up")  # fmt: skip
        pairs = [f"{address}:{port}=127.0.0.1:{port}"
                 for port in (self.registry.port, *self.forward_ports)
                 for address in ("127.0.0.1", NODE_IP)]  # fmt: skip
        self._forward = Service(
            "nsforward",
            [sys.executable, "-m", "edgefleet.testing.nsforward",
             "--netns", f"/proc/{self._pid}/ns/net", *pairs],
            self.dir / "nsforward.log",
        )  # fmt: skip
        forward = self._forward
        wait_until(lambda: "ready" in forward.log_tail(5), timeout=20, what="nsforward",
                   alive=forward.check_alive)  # fmt: skip

    def stop(self) -> None:
        """Delete the cluster and everything this object made; idempotent."""
        if self._forward is not None:
            self._forward.stop()
            self._forward = None
        if shutil.which("kind") is not None and self.cp.kubeconfig.exists():
            subprocess.run(["kind", "delete", "cluster", "--name", self.name,
                            f"--kubeconfig={self.cp.kubeconfig}"],
                           capture_output=True, check=False, timeout=300)  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_inside(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a host command in the kind node's network namespace."""
        return subprocess.run(["nsenter", "-t", str(self._pid), "--net", "--", *argv],
                              capture_output=True, text=True, check=check, timeout=60)  # fmt: skip

    def wait_ready(self, timeout: float | None = None) -> None:
        self.cp.kubectl("wait", "node", "--all", "--for=condition=Ready",
                        f"--timeout={int(timeout or self._timeout)}s")  # fmt: skip

    def check_alive(self) -> None:
        """Raise :class:`ServiceError` if the forwarder or the node container died."""
        if self._forward is not None:
            self._forward.check_alive()
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", self.container],
                               capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
        if state.stdout.strip() != "true":
            raise ServiceError(f"kind node {self.container} is not running")

    def pod_logs(self, namespace: str, pod_prefix: str, lines: int = 80) -> str:
        pods = self.cp.kubectl("get", "pods", "-n", namespace, "-o", "name", check=False)
        out = []
        for pod in pods.stdout.split():
            if pod.removeprefix("pod/").startswith(pod_prefix):
                logs = self.cp.kubectl("logs", "-n", namespace, pod, "--all-containers",
                                       f"--tail={lines}", check=False)  # fmt: skip
                out.append(f"== {pod}\n{logs.stdout}{logs.stderr}")
        return "\n".join(out)

    def logs(self, name: str, lines: int = 60) -> str:
        """The kubelet's or containerd's journal in the node container."""
        done = subprocess.run(["docker", "exec", self.container, "journalctl", "-u", name,
                               "-n", str(lines), "--no-pager"],
                              capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
        return done.stdout + done.stderr
