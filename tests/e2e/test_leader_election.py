"""Two operator replicas: only the Lease holder reconciles; when it dies the other
takes over and reconciles what comes next. No object is built twice."""

from __future__ import annotations

import json

from edgefleet.testing.procs import wait_until
from tests.e2e.conftest import OPERATOR_NS, OperatorProcess
from tests.e2e.model_helpers import mlp_model


def _ready(cp, ns: str, name: str) -> bool:
    out = cp.kubectl("get", "inferencemodels.edgefleet.io", name, "-n", ns, "-o", "json")
    conditions = (json.loads(out.stdout).get("status") or {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _apply(cp, ns, name, model_files, seed):
    doc = mlp_model(model_files, ns, name, f"leader-{name}-{seed}.onnx", seed)
    cp.kubectl("apply", "-f", "-", input_text=json.dumps(doc))


def _holder(cp) -> str:
    out = cp.kubectl("get", "lease", "edgefleet-operator", "-n", OPERATOR_NS, "-o", "json")
    return str(json.loads(out.stdout)["spec"].get("holderIdentity") or "")


def test_only_the_leader_reconciles_and_the_other_takes_over(
    crds, namespace, operator_env, model_files, tmp_path, unique
):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = OperatorProcess({**operator_env, "EDGEFLEET_POD_NAME": f"a-{unique}"}, tmp_path / "a")
    b = OperatorProcess({**operator_env, "EDGEFLEET_POD_NAME": f"b-{unique}"}, tmp_path / "b")
    try:
        a.start()
        wait_until(lambda: "leadership acquired" in a.log(), timeout=60, what="a leads")
        b.start()
        wait_until(lambda: "waiting for leadership" in b.log(), timeout=60, what="b waits")
        assert _holder(crds) == f"a-{unique}"

        first, second = f"first-{unique}", f"second-{unique}"
        _apply(crds, namespace, first, model_files, seed=1)
        wait_until(lambda: _ready(crds, namespace, first), timeout=240, what=f"{first} Ready")
        assert first in a.log()
        assert first not in b.log(), "the passive replica touched an object"
        assert "leadership acquired" not in b.log()

        # kopf posts Events from a queue: let a's BuildSucceeded land before it is killed.
        wait_until(lambda: _succeeded(crds, namespace, first) >= 1, timeout=30,
                   what=f"{first}'s BuildSucceeded Event")  # fmt: skip
        a.kill()  # SIGKILL: the Lease is not released, it must expire
        wait_until(lambda: "leadership acquired" in b.log(), timeout=60, what="b takes over")
        assert _holder(crds) == f"b-{unique}"
        _apply(crds, namespace, second, model_files, seed=2)
        wait_until(lambda: _ready(crds, namespace, second), timeout=240, what=f"{second} Ready")
        assert second in b.log()
        # The model the old leader built is not built again by the new one.
        assert _succeeded(crds, namespace, first) == 1
    finally:
        a.stop()
        b.stop()


def _succeeded(crds, namespace: str, name: str) -> int:
    """How many times the API server has recorded BuildSucceeded for ``name``."""
    events = json.loads(
        crds.kubectl(
            "get", "events", "-n", namespace,
            "--field-selector", f"involvedObject.name={name},reason=BuildSucceeded",
            "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    return sum(e.get("count", 1) for e in events)
