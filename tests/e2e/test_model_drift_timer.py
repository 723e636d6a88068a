"""The drift timer runs on its own: a manifest deleted from the registry comes back.

Real parts only: the API server, a registry of the test's own (deletes enabled; deleting
from it harms no other test), the operator as its own process with a short
``EDGEFLEET_DRIFT_INTERVAL_SECONDS``. The model is built; then the platform manifest is
deleted from the registry behind the operator's back and nothing about the object
changes — no edit, no restart. Only the timer can notice: the operator must put the
manifest back and keep the model Ready, with a ``DriftDetected`` Event.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx

from edgefleet.api.conditions import Reason
from edgefleet.clients import baseimage
from edgefleet.clients.registry import RegistryClient
from edgefleet.testing.models import make_mlp
from edgefleet.testing.procs import wait_until
from edgefleet.testing.registry import LocalRegistry
from tests.conftest import BASE_REPO, BASE_TAG
from tests.e2e.conftest import OperatorProcess

INTERVAL = 3  # seconds between drift checks (the default is 600)
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _get(cp: Any, ns: str, name: str) -> dict[str, Any]:
    return json.loads(
        cp.kubectl("get", "inferencemodels.edgefleet.io", name, "-n", ns, "-o", "json").stdout
    )


def _ready(obj: dict[str, Any]) -> bool:
    conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
    ready = conds.get("Ready", {})
    return ready.get("status") == "True" and ready.get("reason") == Reason.RECONCILED


def test_the_drift_timer_restores_a_manifest_deleted_from_the_registry(
    crds, namespace, operator_env, model_files, tmp_path
):
    with LocalRegistry() as own:
        with RegistryClient(own.url, ca_bundle=own.ca_path) as client:
            baseimage.push_base_index(client, BASE_REPO, ("amd64",), tag=BASE_TAG)
        env = operator_env | {
            "EDGEFLEET_REGISTRY_URL": own.url,
            "EDGEFLEET_REGISTRY_CA": str(own.ca_path),
            "EDGEFLEET_DRIFT_INTERVAL_SECONDS": str(INTERVAL),
        }
        directory, base_url = model_files
        weights = f"drift-{namespace}.onnx"
        fixture = make_mlp(directory / weights, target_bytes=32 * 1024, seed=23)
        doc = {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": {"name": "kept", "namespace": namespace},
            "spec": {
                "version": "1.0.0",
                "platforms": ["linux/amd64"],
                "source": {"url": {"url": f"{base_url}/{weights}", "sha256": fixture.sha256}},
            },
        }
        operator = OperatorProcess(env, tmp_path)
        try:
            operator.start()
            crds.kubectl("apply", "-f", "-", input_text=json.dumps(doc))
            wait_until(
                lambda: _ready(_get(crds, namespace, "kept")),
                timeout=200,
                interval=0.5,
                what="the model to be built",
                alive=operator.service.check_alive,
            )
            built = _get(crds, namespace, "kept")
            repo = built["status"]["repository"].partition("/")[2]
            digest = built["status"]["images"][0]["digest"]
            url = f"{own.url}/v2/{repo}/manifests/{digest}"
            with httpx.Client(verify=ssl.create_default_context(cafile=str(own.ca_path))) as http:
                assert http.delete(url).status_code == 202
                assert http.head(url, headers={"Accept": MANIFEST}).status_code == 404

                def restored() -> bool:
                    head = http.head(url, headers={"Accept": MANIFEST})
                    return head.status_code == 200 and _ready(_get(crds, namespace, "kept"))

                wait_until(
                    restored,
                    timeout=120,
                    interval=0.5,
                    what="the drift timer to put the manifest back",
                    alive=operator.service.check_alive,
                )
            after = _get(crds, namespace, "kept")
            assert after["metadata"]["generation"] == built["metadata"]["generation"]
            assert after["status"]["images"][0]["digest"] == digest, "the same image again"
            assert "drift detected" in operator.log()
            events = json.loads(
                crds.kubectl(
                    "get", "events", "-n", namespace, "-o", "json",
                    "--field-selector", f"involvedObject.name=kept,reason={Reason.DRIFT_DETECTED}",
                ).stdout
            )["items"]  # fmt: skip
            assert events, "a DriftDetected Event"
            assert digest in events[0]["message"]
        finally:
            operator.stop()
