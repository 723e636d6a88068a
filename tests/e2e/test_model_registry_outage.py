"""An operator restart during a registry outage leaves a built model Ready.

Real parts only: the API server, a registry of the test's own (so stopping it harms
no other test), the operator as its own process. The model is built; the operator
stops; the registry goes down; the operator starts again and its resume pass cannot
reach the registry — the model must stay Ready (Built, Signed True) and say that the
check is retrying; when the registry is back, the check passes without a rebuild.
"""

from __future__ import annotations

import json

from edgefleet.api.conditions import Reason
from edgefleet.testing.procs import wait_until
from tests.e2e.conftest import OperatorProcess
from tests.e2e.model_helpers import conditions, get_model, mlp_model, own_registry


def test_restart_during_registry_outage_keeps_a_built_model_ready(
    crds, namespace, operator_env, model_files, tmp_path
):
    with own_registry(operator_env) as (own, env):
        doc = mlp_model(model_files, namespace, "steady", f"outage-{namespace}.onnx", seed=21)
        operator = OperatorProcess(env, tmp_path)
        try:
            operator.start()
            crds.kubectl("apply", "-f", "-", input_text=json.dumps(doc))

            def ready(reason: str) -> bool:
                cond = conditions(get_model(crds, namespace, "steady")).get("Ready", {})
                return cond.get("status") == "True" and cond.get("reason") == reason

            wait_until(
                lambda: ready(Reason.RECONCILED),
                timeout=200,
                interval=0.5,
                what="the model to be built",
                alive=operator.service.check_alive,
            )
            built = get_model(crds, namespace, "steady")["status"]
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
            obj = get_model(crds, namespace, "steady")
            conds = conditions(obj)
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
            after = get_model(crds, namespace, "steady")["status"]
            assert after["indexDigest"] == built["indexDigest"]
            assert after["history"] == built["history"], "no rebuild"
            assert "build started" not in operator.service.log_tail(400)
        finally:
            operator.stop()
