"""The Argo CD health checks (Lua) judge our kinds the way kstatus does.

Each check from the generated ``argocd-cm.yaml`` runs in a real Lua 5.1 interpreter
(Argo CD embeds gopher-lua, a Lua 5.1) against objects whose shape is validated by
the API models first, so a renamed status field breaks this test, not a user's
Argo CD.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.api.inferencemodel import InferenceModel
from edgefleet.api.rollout import Rollout
from tests.cases import example

ROOT = Path(__file__).resolve().parents[2]
CONFIGMAP = ROOT / "manifests" / "examples" / "gitops" / "argocd" / "argocd-cm.yaml"
LUA = shutil.which("lua5.1")
pytestmark = pytest.mark.skipif(LUA is None, reason="lua5.1 is installed by hack/system-deps.sh")
MODELS = {"InferenceModel": InferenceModel, "EdgeDevice": EdgeDevice, "Rollout": Rollout}


def _lua(value: Any) -> str:
    """A Lua table constructor for a JSON value (null fields are simply absent)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):  # a quoted Lua string, every non-printable byte escaped
        body = "".join(
            c if c.isascii() and c.isprintable() and c not in '"\\' else f"\\{b:03d}"
            for c in value
            for b in ([ord(c)] if c.isascii() else list(c.encode()))
        )
        return f'"{body}"'
    if isinstance(value, list):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    assert isinstance(value, dict)
    items = [f"[ {_lua(k)} ] = {_lua(v)}" for k, v in value.items() if v is not None]
    return "{" + ", ".join(items) + "}"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    MODELS[obj["kind"]].model_validate(obj)  # the object has a real shape
    checks = yaml.safe_load(CONFIGMAP.read_text())["data"]
    script = checks[f"resource.customizations.health.edgefleet.io_{obj['kind']}"]
    harness = (
        f"obj = {_lua(obj)}\n"
        f"local check = assert(loadstring({_lua(script)}))\n"
        "local hs = check()\n"
        'io.write(hs.status, "\\t", hs.message or "")\n'
    )
    assert LUA is not None
    out = subprocess.run([LUA, "-"], input=harness, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    status, _, message = out.stdout.partition("\t")
    return status, message


def cond(type_: str, status: str, reason: str = "Test", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-24T00:00:00Z",
    }


def with_status(kind: str, generation: int | None, **status: Any) -> dict[str, Any]:
    obj = example(kind)
    if generation is not None:
        obj["metadata"]["generation"] = generation
    obj["status"] = status or None
    return obj


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        # Not yet looked at by a controller: never Healthy.
        (with_status("Rollout", 1), "Progressing"),
        (with_status("Rollout", 2, observedGeneration=1, conditions=[cond("Ready", "True")]),
         "Progressing"),
        (with_status("Rollout", 1, observedGeneration=1, phase="Progressing",
                     conditions=[cond("Ready", "False"), cond("Progressing", "True")]),
         "Progressing"),
        (with_status("Rollout", 1, observedGeneration=1, phase="Paused",
                     conditions=[cond("Ready", "False")]), "Suspended"),
        (with_status("Rollout", 3, observedGeneration=3, phase="Completed",
                     conditions=[cond("Ready", "True")]), "Healthy"),
        (with_status("Rollout", 1, observedGeneration=1, phase="Aborted",
                     conditions=[cond("Aborted", "True", "FailureThresholdExceeded"),
                                 cond("Ready", "False")]), "Degraded"),
        (with_status("Rollout", 1, observedGeneration=1,
                     conditions=[cond("Stalled", "True", "ProgressDeadlineExceeded")]),
         "Degraded"),
        (with_status("InferenceModel", 1), "Progressing"),
        (with_status("InferenceModel", 1, observedGeneration=1,
                     conditions=[cond("Ready", "True"), cond("Built", "True")]), "Healthy"),
        (with_status("InferenceModel", 1, observedGeneration=1,
                     conditions=[cond("Stalled", "True", "SourceDigestMismatch")]), "Degraded"),
        (with_status("InferenceModel", 1, observedGeneration=1,
                     conditions=[cond("Reconciling", "True", "Building")]), "Progressing"),
        (with_status("EdgeDevice", 1), "Progressing"),
        (with_status("EdgeDevice", 1, observedGeneration=1,
                     conditions=[cond("Online", "True"), cond("Ready", "True")]), "Healthy"),
        (with_status("EdgeDevice", 1, observedGeneration=1, lastSeen="2026-11-24T00:00:00Z",
                     conditions=[cond("Online", "False"), cond("Ready", "True")]), "Degraded"),
        (with_status("EdgeDevice", 1, observedGeneration=1,
                     conditions=[cond("UpdateFailed", "True", "ProbeFailed")]), "Degraded"),
    ],
)  # fmt: skip
def test_health_matches_kstatus(obj, expected):
    status, message = health(obj)
    assert status == expected, message


def test_degraded_message_names_the_reason():
    obj = with_status(
        "Rollout", 1, observedGeneration=1,
        conditions=[cond("Aborted", "True", "FailureThresholdExceeded", "3 of 20 devices failed")],
    )  # fmt: skip
    assert health(obj) == ("Degraded", "FailureThresholdExceeded: 3 of 20 devices failed")


def test_a_suspended_device_is_suspended():
    obj = example("EdgeDevice")
    obj["spec"]["suspended"] = True
    assert health(obj)[0] == "Suspended"
