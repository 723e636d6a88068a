"""Flux's source-controller and kustomize-controller as local processes.

Built from their Go modules by ``hack/tools.sh ensure flux`` (v1.9.6, the newest on
Go 1.26; their CRDs ship beside the binaries), run against a control plane the way
they run in ``flux-system``: ``RUNTIME_NAMESPACE``, all namespaces watched, metrics,
health and artifact storage on 127.0.0.1. kustomize-controller downloads artifacts
from source-controller's storage address.

    with Flux(control_plane) as flux:
        flux.apply_source_and_kustomization(...)
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.lifecycle import Harness
from edgefleet.testing.procs import Service, free_port, wait_until
from edgefleet.testing.tools import node_binary

__all__ = ["FLUX_NS", "Flux"]

FLUX_NS = "flux-system"


class Flux(Harness):
    def __init__(self, cp: ControlPlane, *, timeout: float = 60) -> None:
        self.cp = cp
        self.dir = Path(tempfile.mkdtemp(prefix="edgefleet-flux-"))
        self._services: list[Service] = []
        self._timeout = timeout

    def start(self) -> None:
        source = node_binary("source-controller")
        crds = Path(source).parent / "crds"
        self.cp.kubectl("apply", "--server-side", "-f", str(crds))
        for crd in ("gitrepositories.source.toolkit.fluxcd.io",
                    "kustomizations.kustomize.toolkit.fluxcd.io"):  # fmt: skip
            self.cp.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        self.cp.kubectl("create", "namespace", FLUX_NS, check=False)
        storage_port = free_port()
        (self.dir / "storage").mkdir()
        env = {
            "KUBECONFIG": str(self.cp.kubeconfig),
            "RUNTIME_NAMESPACE": FLUX_NS,
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.dir),
        }
        common = ["--watch-all-namespaces", "--log-level=info"]  # no leader election: one each
        src = Service(
            "source-controller",
            [
                source, *common,
                f"--metrics-addr=127.0.0.1:{free_port()}",
                f"--health-addr=127.0.0.1:{free_port()}",
                f"--storage-addr=127.0.0.1:{storage_port}",
                f"--storage-adv-addr=127.0.0.1:{storage_port}",
                f"--storage-path={self.dir / 'storage'}",
            ],
            self.dir / "source-controller.log",
            env=env,
        )  # fmt: skip
        self._services.append(src)
        kus = Service(
            "kustomize-controller",
            [
                node_binary("kustomize-controller"), *common,
                f"--metrics-addr=127.0.0.1:{free_port()}",
                f"--health-addr=127.0.0.1:{free_port()}",
            ],
            self.dir / "kustomize-controller.log",
            env=env,
        )  # fmt: skip
        self._services.append(kus)
        for service in (src, kus):
            wait_until(
                lambda s=service: "Starting workers" in s.log_tail(400),  # type: ignore[misc]
                timeout=self._timeout,
                what=f"{service.name} to start",
                alive=service.check_alive,
            )

    def stop(self) -> None:
        while self._services:
            self._services.pop().stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def check_alive(self) -> None:
        for service in self._services:
            service.check_alive()

    def log(self, name: str, lines: int = 80) -> str:
        return next((s.log_tail(lines) for s in self._services if s.name == name), "")

    def apply_sync(
        self, name: str, url: str, path: str, target_namespace: str, *, timeout: str = "5m"
    ) -> None:
        """A GitRepository and a Kustomization (``wait: true``) that sync ``path``."""
        docs: list[dict[str, Any]] = [
            {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {"name": name, "namespace": FLUX_NS},
                "spec": {"interval": "5s", "url": url, "ref": {"branch": "main"}},
            },
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": name, "namespace": FLUX_NS},
                "spec": {
                    "interval": "10s",
                    "retryInterval": "5s",
                    "sourceRef": {"kind": "GitRepository", "name": name},
                    "path": path,
                    "prune": True,
                    "wait": True,
                    "timeout": timeout,
                    "targetNamespace": target_namespace,
                },
            },
        ]
        for doc in docs:
            self.cp.kubectl("apply", "-f", "-", input_text=json.dumps(doc))

    def delete_sync(self, name: str) -> None:
        """Remove what :meth:`apply_sync` made (the Kustomization first: no prune runs
        against a source that is going away). Absent objects are fine."""
        for kind in ("kustomization", "gitrepository"):
            self.cp.kubectl(
                "delete", kind, name, "-n", FLUX_NS, "--ignore-not-found", "--wait=false"
            )

    def kustomization(self, name: str) -> dict[str, Any]:
        out = self.cp.kubectl("get", "kustomization", name, "-n", FLUX_NS, "-o", "json")
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def ready(self, name: str) -> tuple[str, str, str, str]:
        """The Kustomization's Ready (status, reason, message) and last applied revision."""
        obj = self.kustomization(name)
        status = obj.get("status") or {}
        for cond in status.get("conditions", []):
            if cond["type"] == "Ready":
                return (cond["status"], cond.get("reason", ""), cond.get("message", ""),
                        status.get("lastAppliedRevision", ""))  # fmt: skip
        return ("Unknown", "", "", status.get("lastAppliedRevision", ""))
