"""A real, local Kubernetes control plane: etcd + kube-apiserver (+ controller-manager).

The envtest approach: pinned binaries (``hack/tools.sh``) started on 127.0.0.1 on
free ports, TLS everywhere with a per-run CA, an admin client certificate
(``system:masters``) in a kubeconfig, readiness judged by ``/readyz``. Every instance
lives in its own temporary directory with its own ports, so two may run at once; all
processes die with their parent and :meth:`ControlPlane.stop` always tears down.
This module is the lifecycle (PKI, start with retries, readiness, stop, ``kubectl``);
the components' flags are in :mod:`edgefleet.testing.controlplane_args` and the
kubeconfig files in :mod:`edgefleet.testing.kubeconfig`.

Used by the pytest fixtures and by ``edgefleet demo``::

    with ControlPlane() as cp:
        subprocess.run([cp.tools.kubectl, "--kubeconfig", cp.kubeconfig, "get", "ns"])
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.testing.controlplane_args import (
    apiserver_argv,
    controller_manager_argv,
    etcd_argv,
    scheduler_argv,
)
from edgefleet.testing.kubeconfig import render_kubeconfig
from edgefleet.testing.lifecycle import Harness
from edgefleet.testing.pki import CertificateAuthority, write_private
from edgefleet.testing.procs import Service, ServiceError, free_port, wait_until
from edgefleet.testing.tools import Tools, find_tools, node_binary

__all__ = ["ControlPlane"]

_START_ATTEMPTS = 3


class ControlPlane(Harness):
    """etcd, kube-apiserver and (optionally) kube-controller-manager on loopback."""

    def __init__(
        self,
        *,
        tools: Tools | None = None,
        controller_manager: bool = True,
        keep_dir: bool = False,
        startup_timeout: float = 90.0,
        node_ip: str | None = None,
    ) -> None:
        """``node_ip`` prepares the control plane for a node that runs pods
        (:mod:`edgefleet.testing.node`): it is advertised as the API server's address
        (the ``kubernetes`` Service's endpoint, reached through a forwarder), the
        Node authorizer and ServiceAccount admission are on, and kube-scheduler and
        the controllers that turn Deployments into Pods run."""
        self.tools = tools or find_tools()
        self.node_ip = node_ip
        self.dir = Path(tempfile.mkdtemp(prefix="edgefleet-cp-"))
        self.dir.chmod(0o700)
        self._with_kcm = controller_manager
        self._keep_dir = keep_dir
        self._timeout = startup_timeout
        self._services: list[Service] = []
        self.port = 0
        self.ca_path = self.dir / "ca.crt"
        self.kubeconfig = self.dir / "admin.kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Start every component and wait until the API server is ready."""
        try:
            self._write_pki()
            for attempt in range(1, _START_ATTEMPTS + 1):
                try:
                    self._start_once()
                    return
                except ServiceError as err:
                    self._stop_services()
                    if "address already in use" not in str(err) or attempt == _START_ATTEMPTS:
                        raise
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process and remove the directory (unless kept); idempotent."""
        self._stop_services()
        if not self._keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_services(self) -> None:
        while self._services:
            self._services.pop().stop()

    # -- pieces ----------------------------------------------------------------------
    def _write_pki(self) -> None:
        ca = CertificateAuthority("edgefleet-local-ca")
        ca.write(self.dir)
        ips = ("127.0.0.1",) if self.node_ip is None else ("127.0.0.1", self.node_ip, "10.96.0.1")
        ca.issue(
            "kube-apiserver",
            server=True,
            ip_addresses=ips,
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        ).write(self.dir, "apiserver")
        ca.issue("edgefleet-admin", organizations=("system:masters",), client=True).write(
            self.dir, "admin"
        )
        ca.issue("system:kube-controller-manager", client=True).write(self.dir, "kcm")
        if self.node_ip is not None:
            ca.issue("system:kube-scheduler", client=True).write(self.dir, "scheduler")
            ca.issue(
                "kube-apiserver-kubelet-client", organizations=("system:masters",), client=True
            ).write(self.dir, "kubelet-client")
        self.ca = ca
        sa_key = ec.generate_private_key(ec.SECP256R1())
        write_private(
            self.dir / "sa.key",
            sa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        (self.dir / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def _spawn(self, name: str, argv: list[str]) -> Service:
        service = Service(name, argv, self.dir / f"{name}.log")
        self._services.append(service)
        return service

    def _start_once(self) -> None:
        d = self.dir
        client_port, peer_port, self.port = free_port(), free_port(), free_port()
        shutil.rmtree(d / "etcd-data", ignore_errors=True)
        etcd_url = f"http://127.0.0.1:{client_port}"
        etcd = self._spawn("etcd", etcd_argv(self.tools.etcd, d, client_port, peer_port))
        apiserver = self._spawn(
            "kube-apiserver",
            apiserver_argv(self.tools.kube_apiserver, d, self.port, etcd_url, self.node_ip),
        )
        alive = _all_alive(etcd, apiserver)
        wait_until(self._ready, timeout=self._timeout, what="kube-apiserver /readyz", alive=alive)
        self.kubeconfig.write_text(
            render_kubeconfig(
                self.url, d / "ca.crt", d / "admin.crt", d / "admin.key", "edgefleet-admin"
            )
        )
        if self._with_kcm:
            self._start_controller_manager()
        if self.node_ip is not None:
            self._start_scheduler()

    def _start_controller_manager(self) -> None:
        d = self.dir
        kc = d / "kcm.kubeconfig"
        kc.write_text(
            render_kubeconfig(
                self.url,
                d / "ca.crt",
                d / "kcm.crt",
                d / "kcm.key",
                "system:kube-controller-manager",
            )
        )
        kcm = self._spawn(
            "kube-controller-manager",
            controller_manager_argv(
                self.tools.kube_controller_manager, d, kc, free_port(), self.node_ip
            ),
        )
        # The controller-manager has no readiness endpoint worth trusting without
        # delegated auth; it is up when its log shows the controllers started.
        wait_until(
            lambda: "Started" in kcm.log_tail(400) or "Starting" in kcm.log_tail(400),
            timeout=self._timeout,
            what="kube-controller-manager to start",
            alive=kcm.check_alive,
        )

    def _start_scheduler(self) -> None:
        d = self.dir
        kc = d / "scheduler.kubeconfig"
        kc.write_text(
            render_kubeconfig(
                self.url, d / "ca.crt", d / "scheduler.crt", d / "scheduler.key",
                "system:kube-scheduler",
            )
        )  # fmt: skip
        scheduler = self._spawn(
            "kube-scheduler", scheduler_argv(node_binary("kube-scheduler"), kc, free_port())
        )
        wait_until(
            lambda: "Starting Kubernetes Scheduler" in scheduler.log_tail(400),
            timeout=self._timeout,
            what="kube-scheduler to start",
            alive=scheduler.check_alive,
        )

    def admin_kubeconfig_for(self, server: str, path: Path) -> Path:
        """The admin kubeconfig with another server address (e.g. through a forwarder)."""
        d = self.dir
        path.write_text(
            render_kubeconfig(
                server, d / "ca.crt", d / "admin.crt", d / "admin.key", "edgefleet-admin"
            )
        )
        return path

    def _ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))
        ctx.load_cert_chain(str(self.dir / "admin.crt"), str(self.dir / "admin.key"))
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", context=ctx, timeout=2) as r:  # noqa: S310
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this control plane."""
        return subprocess.run(
            [self.tools.kubectl, f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )


def _all_alive(*services: Service) -> Callable[[], None]:
    def check() -> None:
        for s in services:
            s.check_alive()

    return check
