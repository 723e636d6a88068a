"""`helm install` into the one-node cluster: the operator and the gateway run as pods
from our own control-plane image, pulled from the local TLS registry; a model builds
and is signed in-cluster (its runtime wheels from an air-gapped mirror); `helm upgrade`
keeps every CR, Secret and identity; a second operator replica stays passive until the
leader's pod dies."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.clients import appbuilder, wheels
from edgefleet.testing.files import file_server
from edgefleet.testing.models import make_mlp
from edgefleet.testing.node import NODE_IP, Node
from edgefleet.testing.procs import wait_until
from tests.conftest import BASE_REPO, BASE_TAG, ROOT

CHART = ROOT / "charts" / "edgefleet"
NS = "edgefleet-system"
pytestmark = pytest.mark.timeout(1200)


def _helm(cp, *args: str) -> str:
    done = subprocess.run(
        [cp.tools.helm, f"--kubeconfig={cp.kubeconfig}", *args],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def image(registry_client, base_index, signing_key, builder_cache) -> str:
    builder = appbuilder.AppImageBuilder(registry_client, signing_key, builder_cache / "app")
    return appbuilder.build_control_plane_image(builder, platforms=("linux/amd64",)).index_digest


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Iterator[tuple[int, int, str]]:
    """A wheel mirror (a page of links, what `pip --find-links` reads) and a model file,
    served on host loopback and forwarded into the node: (wheel port, model port, sha)."""
    wheel_dir = tmp_path_factory.mktemp("wheel-mirror")
    cache = Path.home() / ".cache" / "edgefleet" / "test-builder" / "wheels"
    for path in wheels.fetch_wheels("linux/amd64", cache):
        (wheel_dir / path.name).symlink_to(path)
    models = tmp_path_factory.mktemp("cluster-models")
    make_mlp(models / "m.onnx", target_bytes=32 * 1024, seed=5)
    sha = hashlib.sha256((models / "m.onnx").read_bytes()).hexdigest()
    with file_server(wheel_dir) as wheel_url, file_server(models) as model_url:
        yield int(wheel_url.rsplit(":", 1)[1]), int(model_url.rsplit(":", 1)[1]), sha


@pytest.fixture(scope="module")
def node(cluster_cp, registry, base_index, mirror) -> Iterator[Node]:
    with Node(cluster_cp, registry, forward_ports=mirror[:2]) as n:
        n.wait_ready()
        yield n


@pytest.fixture(scope="module")
def release(node, registry, image, mirror) -> Iterator[list[str]]:
    cp = node.cp
    cp.kubectl("create", "namespace", NS, check=False)
    cp.kubectl("create", "secret", "generic", "registry-ca", "-n", NS,
               f"--from-file=ca.crt={registry.ca_path}")  # fmt: skip
    values = [
        "--set", f"operator.image.repository={registry.host}/edgefleet/control-plane",
        "--set", f"operator.image.digest={image}",
        "--set", f"registry.url=https://{NODE_IP}:{registry.port}",
        "--set", "registry.caSecret=registry-ca",
        "--set", f"baseImage.repository={BASE_REPO}",
        "--set", f"baseImage.reference={BASE_TAG}",
        "--set", f"operator.pip.findLinks=http://{NODE_IP}:{mirror[0]}/",
        "--set", f"operator.pip.trustedHost={NODE_IP}",
        "--set", "gateway.service.type=ClusterIP",
        "--set", "gateway.replicas=1",
        "--set", "operator.resources.requests.cpu=50m",
        "--set", "gateway.resources.requests.cpu=50m",
    ]  # fmt: skip
    _helm(cp, "install", "edgefleet", str(CHART), "-n", NS, *values)
    try:
        yield values
    finally:
        subprocess.run([cp.tools.helm, f"--kubeconfig={cp.kubeconfig}", "uninstall",
                        "edgefleet", "-n", NS, "--wait"], capture_output=True, timeout=300,
                       check=False)  # fmt: skip


def _json(cp, *args: str) -> dict:
    out = cp.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _available(cp, name: str, replicas: int = 1) -> bool:
    status = _json(cp, "deployment", name, "-n", NS).get("status", {})
    return status.get("readyReplicas", 0) >= replicas and not status.get("unavailableReplicas")


def _model_ready(cp, ns: str, name: str) -> bool:
    conditions = (_json(cp, "inferencemodels.edgefleet.io", name, "-n", ns).get("status")
                  or {}).get("conditions", [])  # fmt: skip
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _holder(cp) -> str:
    return (_json(cp, "lease", "edgefleet-operator", "-n", NS).get("spec") or {}).get(
        "holderIdentity"
    ) or ""


def _wait(node, check, what: str, timeout: float = 300) -> None:
    try:
        wait_until(check, timeout=timeout, interval=1, what=what, alive=node.check_alive)
    except Exception as exc:  # say why: the control plane's own logs
        raise AssertionError(f"{exc}\n{node.pod_logs(NS, 'edgefleet-', 40)}") from exc


def test_pods_run_from_our_image_and_a_model_builds_in_cluster(node, release, mirror, registry):
    cp = node.cp
    for name in ("edgefleet-operator", "edgefleet-gateway"):
        _wait(node, lambda n=name: _available(cp, n), f"{name} ready")
    for pod in _json(cp, "pods", "-n", NS)["items"]:
        (container,) = pod["spec"]["containers"]
        assert container["image"].startswith(f"{registry.host}/edgefleet/control-plane@sha256:")
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    cp.kubectl("create", "namespace", "models", check=False)
    model = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": "in-cluster", "namespace": "models"},
        "spec": {
            "version": "1.0.0",
            "platforms": ["linux/amd64"],
            "source": {"url": {"url": f"http://{NODE_IP}:{mirror[1]}/m.onnx", "sha256": mirror[2]}},
        },
    }
    cp.kubectl("apply", "-f", "-", input_text=json.dumps(model))
    _wait(node, lambda: _model_ready(cp, "models", "in-cluster"), "in-cluster build", 600)
    status = _json(cp, "inferencemodels.edgefleet.io", "in-cluster", "-n", "models")["status"]
    assert status["repository"].startswith(f"{NODE_IP}:{registry.port}/")
    assert status["images"][0]["signature"]


def test_upgrade_keeps_state_and_a_second_replica_waits_until_the_leader_dies(node, release):
    cp = node.cp
    _wait(node, lambda: _available(cp, "edgefleet-gateway"), "gateway ready")
    keep = {
        name: _json(cp, "secret", name, "-n", NS)["metadata"]["uid"]
        for name in ("edgefleet-signing-key", "edgefleet-device-ca", "edgefleet-gateway-tls",
                     "edgefleet-document-key")
    }  # fmt: skip
    _helm(cp, "upgrade", "edgefleet", str(CHART), "-n", NS, "--reuse-values",
          "--set", "operator.replicas=2", "--set", "operator.maxConcurrentBuilds=3")  # fmt: skip
    _wait(node, lambda: _available(cp, "edgefleet-operator", 2), "two operator replicas")
    for name, uid in keep.items():
        assert _json(cp, "secret", name, "-n", NS)["metadata"]["uid"] == uid, f"{name} replaced"
    if _json(cp, "inferencemodels.edgefleet.io", "in-cluster", "-n", "models"):
        assert _model_ready(cp, "models", "in-cluster")
    pods = {p["metadata"]["name"] for p in _json(cp, "pods", "-n", NS, "-l",
            "app.kubernetes.io/component=operator")["items"]}  # fmt: skip
    _wait(node, lambda: _holder(cp) in pods, "a replica of this revision to lead")
    leader = _holder(cp)
    cp.kubectl("delete", "pod", leader, "-n", NS, "--grace-period=0", "--force")
    _wait(node, lambda: _holder(cp) not in ("", leader), "the other replica to take over", 120)
    assert _holder(cp) in pods
