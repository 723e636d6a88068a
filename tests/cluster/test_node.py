"""The one-node cluster runs real pods: scheduled, sandboxed by containerd, networked
by the CNI bridge, pulled from the local TLS registry, and able to reach the API
server through the ``kubernetes`` Service with their ServiceAccount token."""

from __future__ import annotations

import json
import subprocess

from edgefleet.testing.procs import wait_until
from tests.cluster.conftest import harness_only
from tests.conftest import BASE_REPO, BASE_TAG

# Run in the pod: GET /version through the kubernetes Service (ClusterIP, kube-proxy's
# rules), TLS verified with the mounted CA, authenticated by the projected token.
PROBE = """
import json, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
req = urllib.request.Request("https://10.96.0.1/version",
    headers={"Authorization": "Bearer " + open(f"{sa}/token").read()})
print(json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["gitVersion"])
"""


def _pod(name: str, image: str, command: list[str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image, "command": command}],
        },
    }


def _phase(cp, name: str) -> str:
    out = cp.kubectl("get", "pod", name, "-o", "json", check=False)
    return json.loads(out.stdout)["status"].get("phase", "") if out.returncode == 0 else ""


def test_node_joins_ready(cluster):
    harness_only("the node's address exists only in its own namespace")
    node = json.loads(cluster.cp.kubectl("get", "node", "-o", "json").stdout)["items"][0]
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == "10.88.0.1"
    # Nothing of the node exists on the host's network: its address is only inside.
    host = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
    assert "10.88.0.1" not in host.stdout


def test_pod_pulls_from_the_local_registry_and_reaches_the_api_server(cluster, registry):
    cp = cluster.cp
    cp.kubectl("create", "serviceaccount", "default", "-n", "default", check=False)
    image = f"{registry.host}/{BASE_REPO}:{BASE_TAG}"
    cp.kubectl(
        "apply", "-f", "-", input_text=json.dumps(_pod("probe", image, ["python3", "-c", PROBE]))
    )
    try:
        wait_until(lambda: _phase(cp, "probe") in ("Succeeded", "Failed"), timeout=180,
                   interval=0.5, what="probe pod to finish")  # fmt: skip
        assert _phase(cp, "probe") == "Succeeded", cluster.logs("kubelet")
    finally:
        cp.kubectl("delete", "pod", "probe", "--wait=false", check=False)
