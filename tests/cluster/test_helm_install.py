"""`helm install` into the one-node cluster: the operator and the gateway run as pods
from our own control-plane image, pulled from the local TLS registry; a model builds
and is signed in-cluster (its runtime wheels from an air-gapped mirror). The release
starts as the previous chart version (0.1.0, packaged in tests/fixtures/charts);
`helm upgrade` to the working chart keeps every CR, every Secret byte for byte and an
enrolled device's identity (it polls again with the certificate it had); a second
operator replica stays passive until the leader's pod dies. The bundled registry
(registry.bundled) runs from our own image, Ready, and takes a blob pushed through
its Service from the node."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.clients import appbuilder, edgefleetimages, registryimage, wheels
from edgefleet.testing.files import file_server
from edgefleet.testing.kind import KindCluster
from edgefleet.testing.models import make_mlp
from edgefleet.testing.node import NODE_IP, Node
from tests.cluster import cluster_queries as q
from tests.cluster.cluster_queries import NS
from tests.cluster.conftest import open_cluster
from tests.conftest import BASE_REPO, BASE_TAG, ROOT

CHART = ROOT / "charts" / "edgefleet"
PREVIOUS = ROOT / "tests" / "fixtures" / "charts" / "edgefleet-0.1.0.tgz"
GATEWAY_NODE_PORT = 30443
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def image(registry_client, base_index, signing_key, builder_cache) -> str:
    builder = appbuilder.AppImageBuilder(registry_client, signing_key, builder_cache / "app")
    return edgefleetimages.build_control_plane_image(
        builder, platforms=("linux/amd64",)
    ).index_digest


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
def node(cluster_cp, registry, base_index, mirror) -> Iterator[Node | KindCluster]:
    with open_cluster(cluster_cp, registry, forward_ports=mirror[:2]) as n:
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
        # Devices (probes in the node's namespaces) reach the gateway at the node address.
        "--set", "gateway.service.type=NodePort",
        "--set", f"gateway.service.nodePort={GATEWAY_NODE_PORT}",
        "--set", f"gateway.names={{{NODE_IP}}}",
        "--set", "gateway.replicas=1",
        "--set", "operator.resources.requests.cpu=50m",
        "--set", "gateway.resources.requests.cpu=50m",
    ]  # fmt: skip
    q.helm(cp, "install", "edgefleet", str(PREVIOUS), "-n", NS, *values)
    try:
        yield values
    finally:
        subprocess.run([cp.tools.helm, f"--kubeconfig={cp.kubeconfig}", "uninstall",
                        "edgefleet", "-n", NS, "--wait"], capture_output=True, timeout=300,
                       check=False)  # fmt: skip


def test_pods_run_from_our_image_and_a_model_builds_in_cluster(node, release, mirror, registry):
    cp = node.cp
    for name in ("edgefleet-operator", "edgefleet-gateway"):
        q.wait(node, lambda n=name: q.available(cp, n), f"{name} ready")
    for pod in q.get_json(cp, "pods", "-n", NS)["items"]:
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
    q.wait(node, lambda: q.model_ready(cp, "models", "in-cluster"), "in-cluster build", 600)
    status = q.get_json(cp, "inferencemodels.edgefleet.io", "in-cluster", "-n", "models")["status"]
    assert status["repository"].startswith(f"{NODE_IP}:{registry.port}/")
    assert status["images"][0]["signature"]


def test_upgrade_from_the_previous_chart_keeps_state_and_a_second_replica_waits(
    node, release, tmp_path
):
    cp = node.cp
    assert q.chart_of(cp, "edgefleet") == "edgefleet-0.1.0"
    q.wait(node, lambda: q.available(cp, "edgefleet-gateway"), "gateway ready")
    # State made under 0.1.0: an enrolled device (its key and certificate kept by the
    # probe), besides the model the first test built.
    cp.kubectl("create", "namespace", "devices", check=False)
    device = {"apiVersion": "edgefleet.io/v1alpha1", "kind": "EdgeDevice",
              "metadata": {"name": "cam-up", "namespace": "devices"},
              "spec": {"platform": "linux/arm64"}}  # fmt: skip
    cp.kubectl("apply", "-f", "-", input_text=json.dumps(device))
    token = subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", "token", "create", "cam-up", "-n", "devices",
         "--gateway-namespace", NS, "--ttl", "1h", f"--kubeconfig={cp.kubeconfig}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    tmp_path.chmod(0o700)
    state = tmp_path / "cam-up.json"
    gateway = (NODE_IP, str(GATEWAY_NODE_PORT), "devices", "cam-up", str(state))
    enrolled = q.probe(node, "device", "enroll", *gateway, token)
    assert enrolled == {"enroll": 200, "poll": 200}, enrolled
    serial = q.get_json(cp, "edgedevice", "cam-up", "-n", "devices")["status"]["enrollment"][
        "certificateSerial"
    ]
    secrets, crs = q.secrets(cp, NS), q.crs(cp)
    for name in ("edgefleet-signing-key", "edgefleet-device-ca", "edgefleet-gateway-ca",
                 "edgefleet-gateway-tls", "edgefleet-document-key",
                 "edgefleet-bootstrap-tokens"):  # fmt: skip
        assert name in secrets, f"{name} missing before the upgrade: {sorted(secrets)}"
    model = q.get_json(cp, "inferencemodels.edgefleet.io", "in-cluster", "-n", "models")

    # --reuse-values, as users run it: the old release's values, the new chart's
    # templates (they must cope with values the old chart did not have).
    q.helm(cp, "upgrade", "edgefleet", str(CHART), "-n", NS, "--reuse-values",
          "--set", "operator.replicas=2", "--set", "operator.maxConcurrentBuilds=3")  # fmt: skip
    assert q.chart_of(cp, "edgefleet") == "edgefleet-0.2.0"
    q.wait(node, lambda: q.rolled_out(cp, "edgefleet-operator", 2), "two operator replicas")
    q.wait(node, lambda: q.rolled_out(cp, "edgefleet-gateway", 1), "the upgraded gateway")

    after = q.secrets(cp, NS)
    for name, data in secrets.items():
        assert after.get(name) == data, f"Secret {name} changed or vanished in the upgrade"
    assert q.crs(cp) == crs  # every CR kept, same objects (uids)
    if model:
        q.wait(node, lambda: q.model_ready(cp, "models", "in-cluster"), "the model Ready", 120)
        now = q.get_json(cp, "inferencemodels.edgefleet.io", "in-cluster", "-n", "models")
        assert now["status"]["images"] == model["status"]["images"]
    # The device is still served with the identity it had: mTLS with its old
    # certificate, a document signed by the key it learnt at enrolment.
    # Ready pods lead the Service's rules by a moment (kube-proxy syncs after the
    # EndpointSlice changes), so a refused connection right after the rollout is retried,
    # as a device would; any answer other than 200 is final.
    polls: list[dict] = []
    q.wait(
        node,
        lambda: (
            polls.append(q.probe(node, "device", "poll", *gateway))
            or polls[-1]["poll"] != "unreachable"
        ),
        "the upgraded gateway to answer the device",
        60,
    )
    assert polls[-1] == {"poll": 200}, polls[-1]
    enrollment = q.get_json(cp, "edgedevice", "cam-up", "-n", "devices")["status"]["enrollment"]
    assert enrollment["certificateSerial"] == serial

    # Pods of the old revision may still be terminating (and leading): only a live pod of
    # the Deployment's current revision counts.
    pods = q.live_operator_pods(cp)
    assert len(set(pods.values())) == 1, pods
    q.wait(node, lambda: q.holder(cp) in pods, "a replica of this revision to lead")
    leader = q.holder(cp)
    cp.kubectl("delete", "pod", leader, "-n", NS, "--grace-period=0", "--force")
    q.wait(node, lambda: q.holder(cp) not in ("", leader), "another replica to take over", 120)
    # The standby usually wins, but the Deployment's replacement for the deleted pod may
    # start and take the free lease first: either is a live replica of this revision.
    holder, now = q.holder(cp), q.live_operator_pods(cp)
    assert now.get(holder) == pods[leader], f"{holder} leads; live operator pods: {now}"


BUNDLED_NS = "edgefleet-bundled"
BUNDLED_IP = "10.96.0.12"  # fixed (no DNS in the harness); in the static band, below .16


@pytest.fixture(scope="module")
def registry_image(registry_client, base_index, signing_key) -> str:
    cache = Path.home() / ".cache" / "edgefleet" / "test-builder" / "debs"
    result = registryimage.build_registry_image(
        registry_client, signing_key, cache, platforms=("linux/amd64", "linux/arm64")
    )
    assert {b.platform for b in result.images} == {"linux/amd64", "linux/arm64"}
    return result.index_digest


def test_bundled_registry_runs_from_our_image_and_serves_through_its_service(
    node, registry, image, registry_image, tmp_path
):
    cp = node.cp
    values = [
        "--set", f"operator.image.repository={registry.host}/edgefleet/control-plane",
        "--set", f"operator.image.digest={image}",
        "--set", "registry.bundled.enabled=true",
        "--set", f"registry.bundled.image.repository={registry.host}/edgefleet/registry",
        "--set", f"registry.bundled.image.digest={registry_image}",
        "--set", "registry.bundled.persistence.enabled=false",
        "--set", f"registry.bundled.service.clusterIP={BUNDLED_IP}",
        "--set", f"registry.bundled.url=https://{BUNDLED_IP}:5000",
        "--set", "operator.watchNamespaces={bundled-models}",
        "--set", "gateway.service.type=ClusterIP", "--set", "gateway.replicas=1",
        "--set", "operator.resources.requests.cpu=20m",
        "--set", "gateway.resources.requests.cpu=20m",
    ]  # fmt: skip
    cp.kubectl("create", "namespace", "bundled-models", check=False)  # its Roles go there
    q.helm(cp, "install", "bundled", str(CHART), "-n", BUNDLED_NS, "--create-namespace", *values)
    try:
        for name in ("registry", "operator", "gateway"):
            q.wait(node, lambda n=name: q.rolled_out(cp, f"bundled-edgefleet-{n}", 1, BUNDLED_NS),
                  f"bundled {name} ready")  # fmt: skip
        pod = q.get_json(cp, "pods", "-n", BUNDLED_NS, "-l", "app.kubernetes.io/component=registry")
        (container,) = pod["items"][0]["spec"]["containers"]
        assert container["image"] == f"{registry.host}/edgefleet/registry@{registry_image}"
        # The operator and the gateway are wired to it.
        for name in ("operator", "gateway"):
            spec = q.get_json(cp, "deployment", f"bundled-edgefleet-{name}", "-n", BUNDLED_NS)
            env = {e["name"]: e.get("value") for e in spec["spec"]["template"]["spec"][
                "containers"][0]["env"]}  # fmt: skip
            assert env["EDGEFLEET_REGISTRY_URL"] == f"https://{BUNDLED_IP}:5000"
        # From the node, through the Service: TLS verified against the chart's CA,
        # anonymous access refused, a blob pushed and read back with the credentials.
        tmp_path.chmod(0o700)
        tls = q.get_json(cp, "secret", "bundled-edgefleet-registry-tls", "-n", BUNDLED_NS)["data"]
        auth = q.get_json(cp, "secret", "bundled-edgefleet-registry-auth", "-n", BUNDLED_NS)["data"]
        (tmp_path / "ca.crt").write_bytes(base64.b64decode(tls["ca.crt"]))
        (tmp_path / "password").write_bytes(base64.b64decode(auth["password"]))
        user = base64.b64decode(auth["username"]).decode()
        # As for the gateway: a refused connection just after the rollout is retried.
        probes: list[dict] = []
        q.wait(
            node,
            lambda: (
                probes.append(q.probe(node, "registry", f"https://{BUNDLED_IP}:5000",
                                     str(tmp_path / "ca.crt"), user, str(tmp_path / "password")))
                or probes[-1]["anonymous"] != "unreachable"
            ),
            "the bundled registry to answer through its Service",
            60,
        )  # fmt: skip
        probe = probes[-1]
        assert probe["anonymous"] == 401, probe
        assert probe["pulled"] == probe["pushed"], probe
        # An upgrade keeps the generated CA, certificate and credentials byte for byte.
        kept = {n: d for n, d in q.secrets(cp, BUNDLED_NS).items() if "-registry-" in n}
        assert set(kept) == {f"bundled-edgefleet-registry-{s}" for s in ("ca", "tls", "auth")}
        q.helm(cp, "upgrade", "bundled", str(CHART), "-n", BUNDLED_NS, "--reuse-values",
              "--set", "operator.maxConcurrentBuilds=1")  # fmt: skip
        after = q.secrets(cp, BUNDLED_NS)
        assert all(after[n] == d for n, d in kept.items()), "a registry Secret changed"
    finally:
        subprocess.run([cp.tools.helm, f"--kubeconfig={cp.kubeconfig}", "uninstall", "bundled",
                        "-n", BUNDLED_NS, "--wait"], capture_output=True, timeout=300,
                       check=False)  # fmt: skip
    # Uninstall leaves the keys (resource-policy keep) unless the namespace goes.
    assert "bundled-edgefleet-registry-ca" in q.secrets(cp, BUNDLED_NS)
    cp.kubectl("delete", "namespace", BUNDLED_NS, "bundled-models", "--wait=false", check=False)
