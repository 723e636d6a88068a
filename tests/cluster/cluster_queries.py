"""What the cluster tests ask the one-node cluster: helm, ``kubectl get -o json`` and
the questions built on it (is a Deployment rolled out, who holds the operator's lease,
which Secrets and CRs exist), a bounded wait that shows the pods' logs when it fails,
and the in-node probes (:mod:`tests.cluster.probes`)."""

from __future__ import annotations

import json
import subprocess
import sys

from edgefleet.testing.procs import wait_until
from tests.conftest import ROOT

NS = "edgefleet-system"

__all__ = [
    "available",
    "chart_of",
    "crs",
    "get_json",
    "helm",
    "holder",
    "live_operator_pods",
    "model_ready",
    "probe",
    "rolled_out",
    "secrets",
    "wait",
]


def helm(cp, *args: str) -> str:
    done = subprocess.run(
        [cp.tools.helm, f"--kubeconfig={cp.kubeconfig}", *args],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def get_json(cp, *args: str) -> dict:
    out = cp.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def available(cp, name: str, replicas: int = 1) -> bool:
    status = get_json(cp, "deployment", name, "-n", NS).get("status", {})
    return status.get("readyReplicas", 0) >= replicas and not status.get("unavailableReplicas")


def model_ready(cp, ns: str, name: str) -> bool:
    conditions = (get_json(cp, "inferencemodels.edgefleet.io", name, "-n", ns).get("status")
                  or {}).get("conditions", [])  # fmt: skip
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def holder(cp) -> str:
    return (get_json(cp, "lease", "edgefleet-operator", "-n", NS).get("spec") or {}).get(
        "holderIdentity"
    ) or ""


def wait(node, check, what: str, timeout: float = 300) -> None:
    try:
        wait_until(check, timeout=timeout, interval=1, what=what, alive=node.check_alive)
    except Exception as exc:  # say why: the control plane's own logs
        raise AssertionError(f"{exc}\n{node.pod_logs(NS, 'edgefleet-', 40)}") from exc


def rolled_out(cp, name: str, replicas: int, namespace: str = NS) -> bool:
    """Every replica of the Deployment's newest revision is up, and nothing older."""
    deploy = get_json(cp, "deployment", name, "-n", namespace)
    status = deploy.get("status", {})
    return (
        status.get("observedGeneration") == deploy.get("metadata", {}).get("generation")
        and status.get("updatedReplicas", 0) == replicas
        and status.get("readyReplicas", 0) == replicas
        and status.get("replicas", 0) == replicas
    )


def probe(node, *args: str) -> dict:
    done = node.run_inside("env", f"PYTHONPATH={ROOT}", sys.executable, "-m",
                           "tests.cluster.probes", *args, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def secrets(cp, namespace: str) -> dict[str, dict]:
    """Every Secret's data but Helm's own release records."""
    return {
        item["metadata"]["name"]: item.get("data", {})
        for item in get_json(cp, "secrets", "-n", namespace)["items"]
        if item.get("type") != "helm.sh/release.v1"
    }


def crs(cp) -> dict[str, str]:
    out = {}
    for kind in ("inferencemodels", "edgedevices", "rollouts"):
        kind = f"{kind}.edgefleet.io"
        for item in get_json(cp, kind, "-A")["items"]:
            meta = item["metadata"]
            out[f"{kind}/{meta['namespace']}/{meta['name']}"] = meta["uid"]
    return out


def chart_of(cp, release: str, namespace: str = NS) -> str:
    (entry,) = json.loads(helm(cp, "list", "-n", namespace, "-o", "json",
                                "--filter", f"^{release}$"))  # fmt: skip
    return entry["chart"]


def live_operator_pods(cp) -> dict[str, str]:
    """Operator pods not being deleted, by name, each with its pod-template-hash."""
    items = get_json(cp, "pods", "-n", NS, "-l", "app.kubernetes.io/component=operator")["items"]
    return {
        p["metadata"]["name"]: p["metadata"]["labels"]["pod-template-hash"]
        for p in items
        if not p["metadata"].get("deletionTimestamp")
    }
