"""The chart without the shared release: `helm template` over a values matrix, every
manifest accepted by the real API server (with the bundled registry wired to the operator
and gateway), and the bundled registry's generated secrets kept across upgrades and
uninstall by a release of its own."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
import yaml

from tests.e2e.chart_helpers import CHART, helm

VALUES_MATRIX = {
    "defaults": [],
    "ha": ["--set", "operator.replicas=3", "--set", "gateway.replicas=3"],
    "external registry with credentials": [
        "--set", "registry.url=https://registry.example.com:5000",
        "--set", "registry.credentialsSecret=registry-login",
        "--set", "gateway.service.type=NodePort", "--set", "gateway.service.nodePort=30443",
    ],
    "user-supplied CA, namespaced, air-gapped": [
        "--set", "registry.caSecret=registry-ca",
        "--set", "operator.watchNamespaces={plant-a,plant-b}",
        "--set", "operator.pip.findLinks=https://wheels.example.com/",
        "--set", "gateway.names={gw.example.com}",
        "--set", "networkPolicy.enabled=false",
    ],
    "bundled registry on a volume": [
        "--set", "registry.bundled.enabled=true",
        "--set", "registry.bundled.image.repository=registry.example.com/edgefleet/registry",
        "--set", "registry.bundled.names={registry.plant-a.example.com,192.0.2.10}",
    ],
    "bundled registry, emptyDir, fixed cluster IP": [
        "--set", "registry.bundled.enabled=true",
        "--set", "registry.bundled.image.repository=registry.example.com/edgefleet/registry",
        "--set", "registry.bundled.image.digest=sha256:" + "ab" * 32,
        "--set", "registry.bundled.persistence.enabled=false",
        "--set", "registry.bundled.service.clusterIP=10.96.0.200",
        "--set", "registry.bundled.url=https://10.96.0.200:5000",
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(VALUES_MATRIX))
def test_rendered_chart_is_accepted_by_the_api_server(crds, case):
    """`helm template` over a values matrix, each manifest validated by the real API
    server (server-side dry run, strict field validation)."""
    namespace = "chart-matrix"
    crds.kubectl("create", "namespace", namespace, check=False)
    for extra in ("plant-a", "plant-b"):
        crds.kubectl("create", "namespace", extra, check=False)
    rendered = helm(
        crds, "template", "edgefleet", str(CHART), "-n", namespace,
        "--set", "registry.url=https://registry.example.com", *VALUES_MATRIX[case],
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ServiceAccount"} <= kinds
    applied = crds.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-",
        input_text=rendered, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("(server dry run)") == len(docs)
    if case.startswith("bundled registry"):
        _check_bundled_wiring(docs)


def _check_bundled_wiring(docs: list[dict]) -> None:
    """The operator and the gateway use the bundled registry: its URL, the CA of its
    serving certificate, the generated credentials; the registry runs non-root on a
    read-only root filesystem and its CA key is mounted nowhere."""
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    registry = by_name[("Deployment", "edgefleet-registry")]["spec"]["template"]["spec"]
    assert registry["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert registry["securityContext"]["runAsNonRoot"] is True
    service = by_name[("Service", "edgefleet-registry")]["spec"]
    url = f"https://{service.get('clusterIP') or 'edgefleet-registry.chart-matrix.svc'}:5000"
    for name in ("edgefleet-operator", "edgefleet-gateway"):
        pod = by_name[("Deployment", name)]["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["EDGEFLEET_REGISTRY_URL"] == url
        assert env["EDGEFLEET_REGISTRY_CA"] == "/etc/edgefleet/registry-ca/ca.crt"
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert secrets["registry-ca"] == "edgefleet-registry-tls"
        assert secrets["registry-credentials"] == "edgefleet-registry-auth"
    mounted = [v["secret"] for d in docs if d["kind"] == "Deployment"
               for v in d["spec"]["template"]["spec"]["volumes"] if "secret" in v]  # fmt: skip
    assert all(s["secretName"] != "edgefleet-registry-ca" for s in mounted)


def _secret(cp, namespace: str, name: str) -> dict:
    out = cp.kubectl("get", "secret", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def test_bundled_registry_secrets_are_generated_once_and_kept(crds, tmp_path):
    """The chart generates the bundled registry's CA, serving certificate and
    credentials on install; an upgrade renders them back byte for byte; new names
    re-issue the certificate from the same CA; uninstall leaves them."""
    from cryptography import x509

    ns, release = "chart-bundled", "bundled"
    names = [f"bundled-edgefleet-registry-{s}" for s in ("ca", "tls", "auth")]
    values = ["--set", "registry.bundled.enabled=true",
              "--set", "registry.bundled.image.repository=registry.example.com/edgefleet/registry",
              "--set", "registry.bundled.persistence.enabled=false"]  # fmt: skip
    helm(crds, "install", release, str(CHART), "-n", ns, "--create-namespace", *values)
    try:
        first = {n: _secret(crds, ns, n)["data"] for n in names}
        assert set(first[names[2]]) == {"username", "password", "htpasswd"}
        helm(crds, "upgrade", release, str(CHART), "-n", ns, "--reuse-values",
              "--set", "operator.maxConcurrentBuilds=3")  # fmt: skip
        assert {n: _secret(crds, ns, n)["data"] for n in names} == first
        helm(crds, "upgrade", release, str(CHART), "-n", ns, "--reuse-values",
              "--set", "registry.bundled.names={registry.plant-a.example.com}")  # fmt: skip
        second = {n: _secret(crds, ns, n)["data"] for n in names}
        assert second[names[0]] == first[names[0]]  # the CA is kept
        assert second[names[2]] == first[names[2]]  # so are the credentials
        assert second[names[1]]["tls.crt"] != first[names[1]]["tls.crt"]  # re-issued
        cert = x509.load_pem_x509_certificate(base64.b64decode(second[names[1]]["tls.crt"]))
        ca = x509.load_pem_x509_certificate(base64.b64decode(first[names[0]]["ca.crt"]))
        cert.verify_directly_issued_by(ca)
        dns = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "registry.plant-a.example.com" in dns.get_values_for_type(x509.DNSName)
    finally:
        subprocess.run([crds.tools.helm, f"--kubeconfig={crds.kubeconfig}", "uninstall", release,
                        "-n", ns], capture_output=True, check=False, timeout=300)  # fmt: skip
    try:
        for name in names:  # resource-policy keep: uninstall leaves the keys
            assert _secret(crds, ns, name), f"{name} deleted by helm uninstall"
    finally:
        crds.kubectl("delete", "namespace", ns, "--wait=false", check=False)
