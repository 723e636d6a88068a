"""Helpers for the rollout e2e tests: the operator running only the rollout controller,
models whose build status the test writes, a fake fleet, and reads of the API server."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client, config

from edgefleet.testing.fakefleet import FakeFleet
from edgefleet.testing.procs import wait_until
from tests.e2e.conftest import OPERATOR_NS, OperatorProcess

G, V = "edgefleet.io", "v1alpha1"
BIN = Path(sys.executable).parent


def digest(*parts: str) -> str:
    return "sha256:" + hashlib.sha256("/".join(parts).encode()).hexdigest()


def rollout_env(crds, registry) -> dict[str, str]:
    crds.kubectl("create", "namespace", OPERATOR_NS, check=False)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")},
        "KUBECONFIG": str(crds.kubeconfig),
        "EDGEFLEET_NAMESPACE": OPERATOR_NS,
        "EDGEFLEET_REGISTRY_URL": registry.url,
        "EDGEFLEET_REGISTRY_CA": str(registry.ca_path),
        # The InferenceModel controller is not run: the tests write model build status
        # themselves (real builds are covered by test_inferencemodel.py).
        "EDGEFLEET_CONTROLLERS": "rollouts",
        "EDGEFLEET_LEADER_ELECTION": "false",
    }


@contextmanager
def operator_process(env: dict[str, str], log_dir: Path) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(env, log_dir)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def api_client(crds) -> client.ApiClient:
    return config.new_client_from_config(str(crds.kubeconfig))


def objects(crds) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client(crds))


def put_model(api: client.CustomObjectsApi, ns: str, version: str, name: str = "det") -> None:
    """The InferenceModel at ``version``, with the status its build would leave."""
    spec = {
        "version": version,
        "platforms": ["linux/amd64", "linux/arm64"],
        "source": {"url": {"url": "https://models.invalid/m.onnx", "sha256": "e" * 64}},
        "config": {"THRESHOLD": "0.5"},
    }
    try:
        obj = api.get_namespaced_custom_object(G, V, ns, "inferencemodels", name)
        obj = api.patch_namespaced_custom_object(G, V, ns, "inferencemodels", name, {"spec": spec})
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        body = {
            "apiVersion": f"{G}/{V}",
            "kind": "InferenceModel",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
        obj = api.create_namespaced_custom_object(G, V, ns, "inferencemodels", body)
    generation = obj["metadata"]["generation"]
    status = {
        "observedGeneration": generation,
        "repository": f"127.0.0.1:5000/edgefleet/models/{ns}/{name}",
        "indexDigest": digest(name, version, "index"),
        "images": [
            {"platform": p, "digest": digest(name, version, p), "sizeBytes": 1000}
            for p in spec["platforms"]
        ],
        "conditions": [
            {
                "type": t,
                "status": "True",
                "reason": "BuildSucceeded",
                "message": "",
                "lastTransitionTime": "2026-11-24T00:00:00Z",
                "observedGeneration": generation,
            }
            for t in ("Built", "Signed", "Ready")
        ],
    }
    api.patch_namespaced_custom_object_status(G, V, ns, "inferencemodels", name, {"status": status})


def apply_rollout(crds, ns: str, name: str, **spec: Any) -> None:
    annotations = spec.pop("annotations", None)
    body: dict[str, Any] = {
        "apiVersion": f"{G}/{V}",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "model": {"name": "det", "version": spec.pop("version", "2.0.0")},
            "selector": spec.pop("selector", {"matchLabels": {"site": "berlin"}}),
            "healthGate": {"minHealthyDuration": "1s"},
            **spec,
        },
    }
    if annotations:
        body["metadata"]["annotations"] = annotations
    crds.kubectl(
        "apply", "--server-side", "--field-manager=flux", "-f", "-", input_text=json.dumps(body)
    )


def get(api: client.CustomObjectsApi, ns: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = api.get_namespaced_custom_object(G, V, ns, plural, name)
    return obj


def devices(api: client.CustomObjectsApi, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.list_namespaced_custom_object(G, V, ns, "edgedevices")[
        "items"
    ]
    return items


def cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def desired_version(dev: dict[str, Any], model: str = "det") -> str | None:
    for w in (dev.get("status") or {}).get("desired") or []:
        if w["model"] == model:
            return str(w["version"])
    return None


def wait_rollout(api, ns, name, check, what, operator=None, timeout=120.0) -> dict[str, Any]:
    alive = operator.service.check_alive if operator is not None else None
    seen: dict[str, Any] = {}

    def ok() -> bool:
        seen.update(get(api, ns, "rollouts", name))
        return bool(check(seen))

    wait_until(ok, timeout=timeout, interval=0.25, what=f"rollout {name}: {what}", alive=alive)
    return seen


def plugin(crds, ns: str, *args: str) -> str:
    """``kubectl edgefleet …`` through kubectl's plugin lookup on PATH."""
    import subprocess

    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [crds.tools.kubectl, "edgefleet", f"--kubeconfig={crds.kubeconfig}", "-n", ns, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def events(crds, ns: str, name: str) -> list[str]:
    out = crds.kubectl(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    return [e["reason"] for e in json.loads(out)["items"]]


def fleet(crds, ns: str, amd: int, arm: int, **kwargs: Any) -> FakeFleet:
    f = FakeFleet(api_client(crds), ns, **kwargs)
    f.create([f"amd-{i:03d}" for i in range(amd)], {"site": "berlin"}, "linux/amd64")
    f.create([f"arm-{i:03d}" for i in range(arm)], {"site": "berlin"}, "linux/arm64")
    return f
