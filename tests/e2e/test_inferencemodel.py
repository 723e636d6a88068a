"""InferenceModel end to end: kubectl apply → the operator (its own process) builds,
pushes and signs → status says Ready with digests. Failures become conditions; a
restart mid-build gives one build, and an unchanged spec never rebuilds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgefleet.api.conditions import Reason
from edgefleet.domain import signing
from edgefleet.testing.models import make_mlp
from edgefleet.testing.procs import wait_until


def _apply_model(cp, ns: str, name: str, url: str, sha: str, version: str = "1.0.0") -> None:
    doc = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "version": version,
            "platforms": ["linux/amd64", "linux/arm64"],
            "source": {"url": {"url": url, "sha256": sha}},
        },
    }
    cp.kubectl("apply", "-f", "-", input_text=json.dumps(doc))


def _get(cp, ns: str, name: str) -> dict[str, Any]:
    return json.loads(
        cp.kubectl("get", "inferencemodels.edgefleet.io", name, "-n", ns, "-o", "json").stdout
    )


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions", []):
        if cond["type"] == type_:
            return cond
    return {}


def _wait_condition(cp, ns, name, type_, status, timeout=240.0, reason=None, operator=None):
    def ok() -> bool:
        cond = _condition(_get(cp, ns, name), type_)
        return cond.get("status") == status and (reason is None or cond.get("reason") == reason)

    alive = operator.service.check_alive if operator is not None else None
    wait_until(ok, timeout=timeout, interval=0.5, what=f"{name} {type_}={status}", alive=alive)
    return _get(cp, ns, name)


def _events(cp, ns: str, name: str) -> list[dict[str, Any]]:
    out = cp.kubectl(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    return json.loads(out)["items"]


def _model(model_files, unique: str, seed: int, size: int = 64 * 1024):
    directory, base_url = model_files
    path = directory / f"e2e-{unique}-{seed}.onnx"
    fixture = make_mlp(path, target_bytes=size, seed=seed)
    return fixture, f"{base_url}/{path.name}"


def test_model_becomes_ready_with_signed_digests(
    crds, namespace, operator, model_files, registry_client, unique
):
    fixture, url = _model(model_files, unique, seed=11)
    _apply_model(crds, namespace, "detector", url, fixture.sha256)
    obj = _wait_condition(crds, namespace, "detector", "Ready", "True", operator=operator)
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert {i["platform"] for i in status["images"]} == {"linux/amd64", "linux/arm64"}
    assert status["indexDigest"].startswith("sha256:")
    assert status["history"][0]["indexDigest"] == status["indexDigest"]
    for cond in ("Built", "Signed"):
        assert _condition(obj, cond)["status"] == "True"
    assert _condition(obj, "Reconciling")["status"] == "False"
    # The signatures verify with the public key the operator published.
    pub = json.loads(
        crds.kubectl(
            "get",
            "configmap",
            "edgefleet-signing-key-public",
            "-n",
            "edgefleet-system",
            "-o",
            "json",
        ).stdout
    )["data"]["cosign.pub"]
    repo = status["repository"].split("/", 1)[1]
    for digest in [status["indexDigest"], *(i["digest"] for i in status["images"])]:
        data, media_type, _ = registry_client.get_manifest(repo, signing.signature_tag(digest))
        layers = signing.signature_layers(data, media_type)
        assert len(layers) == 1
        payload = registry_client.get_blob(repo, layers[0].digest)
        assert signing.is_duplicate(layers[0], payload, signing.load_public_key(pub.encode()))
    # kopf posts Events from a queue, a moment after the status is written.
    wait_until(
        lambda: (
            {Reason.BUILDING, Reason.BUILD_SUCCEEDED}
            <= {e["reason"] for e in _events(crds, namespace, "detector")}
        ),
        timeout=30,
        what="the Building and BuildSucceeded Events",
    )
    # The printer columns show it.
    row = crds.kubectl("get", "efmodel", "detector", "-n", namespace).stdout
    assert "True" in row
    assert "1.0.0" in row


def test_bad_source_hash_is_a_stalled_condition_and_pushes_nothing(
    crds, namespace, operator, model_files, registry_client, unique
):
    fixture, url = _model(model_files, unique, seed=12)
    _apply_model(crds, namespace, "badhash", url, "f" * 64)
    obj = _wait_condition(
        crds,
        namespace,
        "badhash",
        "Built",
        "False",
        reason=Reason.SOURCE_DIGEST_MISMATCH,
        operator=operator,
    )
    built = _condition(obj, "Built")
    assert fixture.sha256 in built["message"]
    assert _condition(obj, "Stalled")["status"] == "True"
    assert _condition(obj, "Ready")["status"] == "False"
    from edgefleet.clients.registry_errors import RegistryError

    with pytest.raises(RegistryError):
        registry_client.list_tags(f"edgefleet/models/{namespace}/badhash")
    # Fixing the pin (a spec change) recovers without a restart.
    _apply_model(crds, namespace, "badhash", url, fixture.sha256)
    _wait_condition(crds, namespace, "badhash", "Ready", "True", operator=operator)


@pytest.mark.timeout(600)
def test_restart_mid_build_gives_one_build_and_no_rebuild_after(
    crds, namespace, operator, model_files, registry_client, unique
):
    fixture, url = _model(model_files, unique, seed=13, size=8 * 1024 * 1024)
    _apply_model(crds, namespace, "restart", url, fixture.sha256)
    _wait_condition(
        crds, namespace, "restart", "Reconciling", "True", reason=Reason.BUILDING, operator=operator
    )
    operator.kill()
    operator.start()
    obj = _wait_condition(crds, namespace, "restart", "Ready", "True", operator=operator)
    status = obj["status"]
    assert len(status["history"]) == 1
    repo = status["repository"].split("/", 1)[1]
    for digest in [status["indexDigest"], *(i["digest"] for i in status["images"])]:
        data, media_type, _ = registry_client.get_manifest(repo, signing.signature_tag(digest))
        assert len(signing.signature_layers(data, media_type)) == 1, "one signature, not two"

    def succeeded() -> int:
        events = _events(crds, namespace, "restart")
        return sum(e.get("count", 1) for e in events if e["reason"] == Reason.BUILD_SUCCEEDED)

    wait_until(lambda: succeeded() >= 1, timeout=30, what="the BuildSucceeded Event")
    assert succeeded() == 1
    # Another restart with an unchanged spec: the operator resumes and does not rebuild.
    operator.stop()
    operator.start()
    wait_until(
        lambda: (
            "up to date" in operator.service.log_tail(400)
            or "build started" in operator.service.log_tail(400)
        ),
        timeout=60,
        what="the operator to look at the model again",
        alive=operator.service.check_alive,
    )
    assert "build started" not in operator.service.log_tail(400)
    assert _get(crds, namespace, "restart")["status"]["indexDigest"] == status["indexDigest"]
