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
from edgefleet.testing.procs import wait_until
from tests.e2e.conftest import OperatorProcess
from tests.e2e.model_helpers import conditions, get_model, mlp_model, own_registry

INTERVAL = 3  # seconds between drift checks (the default is 600)
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _ready(obj: dict[str, Any]) -> bool:
    ready = conditions(obj).get("Ready", {})
    return ready.get("status") == "True" and ready.get("reason") == Reason.RECONCILED


def test_the_drift_timer_restores_a_manifest_deleted_from_the_registry(
    crds, namespace, operator_env, model_files, tmp_path
):
    with own_registry(operator_env) as (own, env):
        env = env | {"EDGEFLEET_DRIFT_INTERVAL_SECONDS": str(INTERVAL)}
        doc = mlp_model(model_files, namespace, "kept", f"drift-{namespace}.onnx", seed=23)
        operator = OperatorProcess(env, tmp_path)
        try:
            operator.start()
            crds.kubectl("apply", "-f", "-", input_text=json.dumps(doc))
            wait_until(
                lambda: _ready(get_model(crds, namespace, "kept")),
                timeout=200,
                interval=0.5,
                what="the model to be built",
                alive=operator.service.check_alive,
            )
            built = get_model(crds, namespace, "kept")
            repo = built["status"]["repository"].partition("/")[2]
            digest = built["status"]["images"][0]["digest"]
            url = f"{own.url}/v2/{repo}/manifests/{digest}"
            with httpx.Client(verify=ssl.create_default_context(cafile=str(own.ca_path))) as http:
                assert http.delete(url).status_code == 202
                assert http.head(url, headers={"Accept": MANIFEST}).status_code == 404

                def restored() -> bool:
                    head = http.head(url, headers={"Accept": MANIFEST})
                    return head.status_code == 200 and _ready(get_model(crds, namespace, "kept"))

                wait_until(
                    restored,
                    timeout=120,
                    interval=0.5,
                    what="the drift timer to put the manifest back",
                    alive=operator.service.check_alive,
                )
            after = get_model(crds, namespace, "kept")
            assert after["metadata"]["generation"] == built["metadata"]["generation"]
            assert after["status"]["images"][0]["digest"] == digest, "the same image again"
            assert "drift detected" in operator.log()

            def drift_events() -> list[dict]:
                return json.loads(
                    crds.kubectl(
                        "get", "events", "-n", namespace, "-o", "json",
                        "--field-selector",
                        f"involvedObject.name=kept,reason={Reason.DRIFT_DETECTED}",
                    ).stdout
                )["items"]  # fmt: skip

            # Events are posted from kopf's queue, and the 3 s timer may post more than one.
            wait_until(lambda: drift_events(), timeout=30, what="a DriftDetected Event")
            events = drift_events()
            assert any(digest in e["message"] for e in events), events
        finally:
            operator.stop()
