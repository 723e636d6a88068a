"""An operator restart during a registry outage leaves a built model Ready.

Real parts only: the API server, a registry of the test's own (so stopping it harms
no other test), the operator as its own process. The model is built; the operator
stops; the registry goes down; the operator starts again and its resume pass cannot
reach the registry — the model must stay Ready (Built, Signed True) and say that the
check is retrying; when the registry is back, the check passes without a rebuild.
"""

from __future__ import annotations

import json
from typing import Any

from edgefleet.api.conditions import Reason
from edgefleet.clients import baseimage
from edgefleet.clients.registry import RegistryClient
from edgefleet.testing.models import make_mlp
from edgefleet.testing.procs import wait_until
from edgefleet.testing.registry import LocalRegistry
from tests.conftest import BASE_REPO, BASE_TAG
from tests.e2e.conftest import OperatorProcess


def _get(cp, ns: str, name: str) -> dict[str, Any]:
    return json.loads(
        cp.kubectl("get", "inferencemodels.edgefleet.io", name, "-n", ns, "-o", "json").stdout
    )


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}


def test_restart_during_registry_outage_keeps_a_built_model_ready(
    crds, namespace, operator_env, model_files, tmp_path
):
    with LocalRegistry() as own:
        with RegistryClient(own.url, ca_bundle=own.ca_path) as client:
            baseimage.push_base_index(client, BASE_REPO, ("amd64",), tag=BASE_TAG)
        env = operator_env | {
            "EDGEFLEET_REGISTRY_URL": own.url,
            "EDGEFLEET_REGISTRY_CA": str(own.ca_path),
        }
        directory, base_url = model_files
        fixture = make_mlp(directory / f"outage-{namespace}.onnx", target_bytes=32 * 1024, seed=21)
        doc = {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": {"name": "steady", "namespace": namespace},
            "spec": {
                "version": "1.0.0",
                "platforms": ["linux/amd64"],
                "source": {
                    "url": {"url": f"{base_url}/outage-{namespace}.onnx", "sha256": fixture.sha256}
                },
            },
        }
        operator = OperatorProcess(env, tmp_path)
        try:
            operator.start()
            crds.kubectl("apply", "-f", "-", input_text=json.dumps(doc))

            def ready(reason: str) -> bool:
                cond = _conditions(_get(crds, namespace, "steady")).get("Ready", {})
                return cond.get("status") == "True" and cond.get("reason") == reason

            wait_until(
                lambda: ready(Reason.RECONCILED),
                timeout=200,
                interval=0.5,
                what="the model to be built",
                alive=operator.service.check_alive,
            )
            built = _get(crds, namespace, "steady")["status"]
            operator.stop()
            own.interrupt()
            operator.start()
            wait_until(
                lambda: ready(Reason.CHECK_RETRYING),
                timeout=60,
                interval=0.5,
                what="the resumed operator to find the registry down",
                alive=operator.service.check_alive,
            )
            obj = _get(crds, namespace, "steady")
            conds = _conditions(obj)
            assert conds["Built"]["status"] == "True"
            assert conds["Signed"]["status"] == "True"
            assert conds["Stalled"]["status"] == "False"
            assert "retrying" in conds["Ready"]["message"]
            assert obj["status"]["indexDigest"] == built["indexDigest"]
            own.resume()
            wait_until(
                lambda: ready(Reason.RECONCILED),
                timeout=90,
                interval=0.5,
                what="the re-check to pass once the registry is back",
                alive=operator.service.check_alive,
            )
            after = _get(crds, namespace, "steady")["status"]
            assert after["indexDigest"] == built["indexDigest"]
            assert after["history"] == built["history"], "no rebuild"
            assert "build started" not in operator.service.log_tail(400)
        finally:
            operator.stop()
