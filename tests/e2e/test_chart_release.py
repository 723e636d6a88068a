"""`helm install` of the control plane into a real API server: CRDs, operator Deployment,
least-privilege RBAC — and the operator and the gateway, running with nothing but the
chart's ServiceAccount tokens, build a model and serve a device. Upgrades keep the CRs.
One release per module (the module-scoped ``release`` fixture): every test here shares it."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.conftest import BASE_REPO, BASE_TAG, ROOT
from tests.e2e.chart_helpers import CHART, helm
from tests.e2e.conftest import OperatorProcess
from tests.e2e.test_inferencemodel import _apply_model, _model, _wait_condition

NS = "edgefleet-chart"
SA = "system:serviceaccount:edgefleet-chart:edgefleet-operator"
GW = "system:serviceaccount:edgefleet-chart:edgefleet-gateway"


@pytest.fixture(scope="module")
def release(crds, registry):
    helm(
        crds,
        "install",
        "edgefleet",
        str(CHART),
        "-n",
        NS,
        "--create-namespace",
        "--set",
        f"registry.url={registry.url}",
        "--set",
        f"baseImage.repository={BASE_REPO}",
        "--set",
        f"baseImage.reference={BASE_TAG}",
    )
    try:
        yield
    finally:
        subprocess.run(
            [
                crds.tools.helm,
                f"--kubeconfig={crds.kubeconfig}",
                "uninstall",
                "edgefleet",
                "-n",
                NS,
            ],
            capture_output=True,
            check=False,
            timeout=300,
        )
        crds.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def _can(cp, verb: str, resource: str, namespace: str | None = None) -> bool:
    who, _, verb = verb.rpartition("|")  # "<service account>|verb", or the operator's
    subresource = []
    if resource.endswith("/status"):  # kubectl reads "kind/x" as a name: say subresource
        resource, subresource = resource.removesuffix("/status"), ["--subresource=status"]
    args = ["auth", "can-i", verb, resource, *subresource, f"--as={who or SA}"]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    return cp.kubectl(*args, check=False).stdout.strip() == "yes"


def test_install_creates_operator_and_rbac(crds, release):
    deploy = json.loads(
        crds.kubectl("get", "deployment", "edgefleet-operator", "-n", NS, "-o", "json").stdout
    )
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # PodSecurity "restricted" accepts the pod template: a server-side dry run of a Pod
    # from it in a namespace that enforces the profile.
    crds.kubectl("create", "namespace", "restricted-check", check=False)
    try:
        crds.kubectl(
            "label",
            "namespace",
            "restricted-check",
            "--overwrite",
            "pod-security.kubernetes.io/enforce=restricted",
        )
        pod_doc = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe", "namespace": "restricted-check"},
            "spec": {**pod, "serviceAccountName": "default"},
        }
        crds.kubectl("apply", "--dry-run=server", "-f", "-", input_text=json.dumps(pod_doc))
    finally:
        crds.kubectl("delete", "namespace", "restricted-check", "--wait=false", check=False)


@pytest.mark.parametrize(
    ("verb", "resource", "namespace", "allowed"),
    [
        ("watch", "inferencemodels.edgefleet.io", None, True),
        ("patch", "inferencemodels.edgefleet.io/status", None, True),
        ("patch", "rollouts.edgefleet.io/status", None, True),
        ("create", "events", "default", True),
        ("delete", "inferencemodels.edgefleet.io", None, False),
        ("create", "inferencemodels.edgefleet.io", None, False),
        ("get", "secrets/edgefleet-signing-key", NS, True),
        ("get", "secrets/some-other-secret", NS, False),
        ("list", "secrets", NS, False),
        ("get", "secrets", "default", False),
        ("create", "pods", NS, False),
        ("create", "deployments.apps", NS, False),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", None, True),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io", None, False),
        ("update", "leases.coordination.k8s.io/edgefleet-operator", NS, True),
        ("update", "leases.coordination.k8s.io/kube-scheduler", NS, False),
        ("update", "leases.coordination.k8s.io/edgefleet-operator", "default", False),
        # the gateway's ServiceAccount
        (f"{GW}|watch", "edgedevices.edgefleet.io", None, True),
        (f"{GW}|patch", "edgedevices.edgefleet.io/status", None, True),
        (f"{GW}|patch", "edgedevices.edgefleet.io", None, False),  # never a spec
        (f"{GW}|get", "inferencemodels.edgefleet.io", None, False),
        (f"{GW}|get", "secrets/edgefleet-device-ca", NS, True),
        (f"{GW}|update", "secrets/edgefleet-bootstrap-tokens", NS, True),
        (f"{GW}|get", "secrets/edgefleet-signing-key", NS, False),  # the image key
        (f"{GW}|list", "secrets", NS, False),
        (f"{GW}|get", "configmaps/edgefleet-signing-key-public", NS, True),
        (f"{GW}|get", "secrets/edgefleet-device-ca", "default", False),
        (f"{GW}|create", "pods", NS, False),
        (f"{GW}|create", "events", "default", True),  # with a status failure it records
        (f"{GW}|delete", "events", "default", False),
    ],
)
def test_rbac_is_least_privilege(crds, release, verb, resource, namespace, allowed):
    assert _can(crds, verb, resource, namespace) is allowed


@pytest.mark.timeout(600)
def test_operator_builds_with_only_the_charts_service_account(
    crds, release, registry, base_index, model_files, namespace, tmp_path, unique, operator_env
):
    token = crds.kubectl(
        "create", "token", "edgefleet-operator", "-n", NS, "--duration=1h"
    ).stdout.strip()
    config = yaml.safe_load(crds.kubeconfig.read_text())
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    kubeconfig = tmp_path / "operator.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    env = {**operator_env, "KUBECONFIG": str(kubeconfig), "EDGEFLEET_NAMESPACE": NS}
    proc = OperatorProcess(env, tmp_path)
    proc.start()
    try:
        fixture, url = _model(model_files, unique, seed=21)
        _apply_model(crds, namespace, "least-privilege", url, fixture.sha256)
        _wait_condition(crds, namespace, "least-privilege", "Ready", "True", operator=proc)
        assert "edgefleet-signing-key-public" in crds.kubectl("get", "configmaps", "-n", NS).stdout
    finally:
        proc.stop()
    assert "Forbidden" not in proc.log(), proc.log()[-3000:]


def test_upgrade_keeps_custom_resources(crds, release, namespace, registry):
    example = yaml.safe_load(
        (ROOT / "manifests/examples/10-devices.yaml").read_text().split("---")[0]
    )
    example["metadata"]["namespace"] = namespace
    crds.kubectl("apply", "-f", "-", input_text=json.dumps(example))
    helm(
        crds,
        "upgrade",
        "edgefleet",
        str(CHART),
        "-n",
        NS,
        "--reuse-values",
        "--set",
        "operator.maxConcurrentBuilds=3",
    )
    assert example["metadata"]["name"] in crds.kubectl("get", "efdev", "-n", namespace).stdout
    env = json.loads(
        crds.kubectl("get", "deployment", "edgefleet-operator", "-n", NS, "-o", "json").stdout
    )["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "EDGEFLEET_MAX_CONCURRENT_BUILDS", "value": "3"} in env


def _service_account_kubeconfig(cp, account: str, path) -> str:
    token = cp.kubectl("create", "token", account, "-n", NS, "--duration=1h").stdout.strip()
    config = yaml.safe_load(cp.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = account
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_gateway_serves_a_device_with_only_the_charts_service_account(
    crds, release, namespace, tmp_path
):
    import asyncio

    from kubernetes import client, config

    from edgefleet.clients import tokens
    from edgefleet.clients.signingkey import ensure_signing_key
    from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
    from edgefleet.testing.simdevice import SimDevice

    admin = config.new_client_from_config(config_file=str(crds.kubeconfig))
    ensure_signing_key(client.CoreV1Api(admin), NS, "edgefleet-signing-key")  # the operator's
    _service_account_kubeconfig(crds, "edgefleet-gateway", tmp_path / "gw.kubeconfig")
    device = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": "cam-chart", "namespace": namespace},
        "spec": {"platform": "linux/arm64"},
    }
    crds.kubectl("apply", "-f", "-", input_text=json.dumps(device))
    loop = asyncio.new_event_loop()
    with GatewayReplica(loopback_config(NS, replica="gw-chart"), tmp_path / "gw.kubeconfig") as gw:
        token = tokens.create_token(
            admin, gateway_namespace=NS, namespace=namespace, device="cam-chart",
            ca_hash=gw.pki().serving_ca_hash(),
        )  # fmt: skip
        sim = SimDevice("127.0.0.1", gw.port, namespace, "cam-chart", "linux/arm64")
        try:
            enrolled = loop.run_until_complete(sim.enroll(str(token)))
            assert enrolled.status == 200, enrolled.body
            assert loop.run_until_complete(sim.poll(wait=0)).status == 200
        finally:
            sim.close()
            loop.run_until_complete(asyncio.sleep(0.05))
            loop.close()
    status = json.loads(
        crds.kubectl("get", "edgedevice", "cam-chart", "-n", namespace, "-o", "json").stdout
    )["status"]
    assert status["enrollment"]["certificateSerial"]
    # Everything the gateway made for itself exists, by the names its RBAC allows.
    secrets = crds.kubectl("get", "secrets", "-n", NS, "-o", "name").stdout
    for name in ("edgefleet-device-ca", "edgefleet-gateway-ca", "edgefleet-gateway-tls",
                 "edgefleet-document-key"):  # fmt: skip
        assert f"secret/{name}" in secrets
