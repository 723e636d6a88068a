"""Rollouts end to end with real agents in containers (linux/amd64, linux/arm64 under qemu).

Everything is real: the operator process builds and signs each model version and runs
the rollout controller; ``edgefleet gateway`` serves the devices; each device is the
agent's own image in a container on this machine's Docker engine (enrolled with a
token from ``edgefleet token create``), pulling signed model images through the
gateway and running them. v1 goes out to both devices; a canary of v2 completes (the
EdgeDevices are Ready with v2's digests, the workloads answer inference requests with
v2's answer); v3, whose probe fails on the device, aborts and the devices return to v2
by themselves (desired and current v2, Ready, still answering).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from edgefleet.domain import signing
from edgefleet.testing import agentcontainers as ac
from edgefleet.testing.models import ModelFixture, make_mlp
from edgefleet.testing.procs import free_port, wait_until
from edgefleet_node.agent.workload_http import request
from tests.e2e import rollout_helpers as h
from tests.e2e.conftest import OperatorProcess

PLATFORMS = ("linux/amd64", "linux/arm64")
SLOW = 4.0  # the arm64 device runs under qemu: everything takes longer


@pytest.fixture
def world(crds, registry, registry_client, base_index, builder_cache, operator_env,
          docker_engine, model_files, tmp_path) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Operator, gateway and one device per platform; everything removed afterwards."""
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", ns)
    client = docker.from_env(timeout=300)
    operator = OperatorProcess(operator_env, tmp_path)
    port = free_port()
    gateway = ac.GatewayProcess(
        ac.gateway_env(crds.kubeconfig, registry, port, "gw-e2e"), tmp_path, port
    )
    devices: list[ac.DeviceContainer] = []
    images: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(crds.kubectl, "delete", "namespace", ns, "--wait=false", check=False)
        stack.callback(client.close)
        stack.callback(operator.stop)
        stack.callback(gateway.stop)
        stack.enter_context(ac.trusted_registry(registry))

        def remove_all() -> None:
            for device in devices:
                print(f"--- agent {device.name}\n{device.logs()}")
                device.remove()
            ac.remove_model_images(client, ns)
            for ref in images.values():
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(ref, force=True)

        stack.callback(remove_all)
        operator.start()
        images.update(
            ac.build_agent_image(
                registry_client, signing.generate_key(), builder_cache / "app", PLATFORMS, "e2e"
            )
        )
        yield {
            "ns": ns,
            "client": client,
            "operator": operator,
            "gateway": gateway,
            "devices": devices,
            "images": images,
            "models": model_files,
        }


def _fixture(models: tuple[Path, str], seed: int) -> tuple[ModelFixture, str]:
    directory, base_url = models
    path = directory / f"rollout-e2e-{seed}-{uuid.uuid4().hex[:6]}.onnx"
    return make_mlp(path, target_bytes=64 * 1024, seed=seed), f"{base_url}/{path.name}"


def _put_model(crds, ns: str, version: str, weights: tuple[ModelFixture, str],
               probe: ModelFixture) -> None:  # fmt: skip
    fixture, url = weights
    crds.kubectl("apply", "--server-side", "--field-manager=flux", "-f", "-",
                 input_text=json.dumps({
        "apiVersion": "edgefleet.io/v1alpha1", "kind": "InferenceModel",
        "metadata": {"name": "det", "namespace": ns},
        "spec": {"version": version, "platforms": list(PLATFORMS),
                 "source": {"url": {"url": url, "sha256": fixture.sha256}},
                 "probe": probe.probe_spec(tolerance=1e-3)},
    }))  # fmt: skip


def _built(api, ns: str, version: str, operator) -> dict[str, str]:
    """Wait for the model's build at ``version``; its digest per platform."""

    def ready() -> bool:
        obj = h.get(api, ns, "inferencemodels", "det")
        status = obj.get("status") or {}
        return (
            obj["spec"]["version"] == version
            and status.get("observedGeneration") == obj["metadata"]["generation"]
            and h.cond(obj, "Ready").get("status") == "True"
        )

    wait_until(ready, timeout=900, what=f"model det {version} built",
               alive=operator.service.check_alive)  # fmt: skip
    images = h.get(api, ns, "inferencemodels", "det")["status"]["images"]
    return {i["platform"]: i["digest"] for i in images}


def _on(api, ns: str, version: str, digests: dict[str, str]) -> bool:
    """Every device is Ready, desired and current at ``version`` with its digest."""
    for dev in h.devices(api, ns):
        current = (dev.get("status") or {}).get("current") or []
        if (
            h.desired_version(dev) != version
            or h.cond(dev, "Ready").get("status") != "True"
            or [c.get("imageDigest") for c in current] != [digests[dev["spec"]["platform"]]]
        ):
            return False
    return True


def _answers(device: ac.DeviceContainer, fixture: ModelFixture) -> bool:
    port = device.workload_port("det")
    if port is None:
        return False
    body = json.dumps(fixture.probe_request()).encode()
    try:
        answer = request("127.0.0.1", port, "POST", "/v1/predict", body, 60)
    except OSError:
        return False
    return answer.status == 200 and fixture.matches(json.loads(answer.body)["outputs"])


@pytest.mark.timeout(3600)
def test_canary_on_real_agents_then_a_broken_model_rolls_back_by_itself(crds, world):
    ns, api, op = world["ns"], h.objects(crds), world["operator"]
    v1, v2, v3 = (_fixture(world["models"], seed) for seed in (301, 302, 303))
    _put_model(crds, ns, "1.0.0", v1, v1[0])
    digests1 = _built(api, ns, "1.0.0", op)
    # the operator has published its image-signing public key: the gateway can start
    world["gateway"].start(crds)
    for platform in PLATFORMS:
        arch = platform.split("/")[1]
        name = f"dev-{arch}"
        crds.kubectl("apply", "-f", "-", input_text=json.dumps({
            "apiVersion": "edgefleet.io/v1alpha1", "kind": "EdgeDevice",
            "metadata": {"name": name, "namespace": ns, "labels": {"site": "berlin"}},
            "spec": {"platform": platform},
        }))  # fmt: skip
        world["devices"].append(ac.start_device(
            world["client"], world["images"][platform], platform, world["gateway"], ns, name,
            scope=f"{ns.replace('-', '')}{arch}", slow=SLOW,
        ))  # fmt: skip

    def alive() -> None:
        op.service.check_alive()
        for device in world["devices"]:
            device.alive()

    h.apply_rollout(crds, ns, "v1", version="1.0.0")
    h.wait_rollout(api, ns, "v1", lambda o: (o.get("status") or {}).get("phase") == "Completed",
                   "v1 completed", timeout=1500)  # fmt: skip
    wait_until(lambda: _on(api, ns, "1.0.0", digests1), timeout=300, what="v1 everywhere",
               alive=alive)  # fmt: skip

    # v2: a canary, one device first
    _put_model(crds, ns, "2.0.0", v2, v2[0])
    digests2 = _built(api, ns, "2.0.0", op)
    assert set(digests2.values()).isdisjoint(digests1.values())
    steps = [{"setWeight": 50}, {"pause": {"duration": "2s"}}]
    h.apply_rollout(crds, ns, "v2", version="2.0.0", maxUnavailable="1", canary={"steps": steps})
    obj = h.wait_rollout(
        api, ns, "v2", lambda o: (o.get("status") or {}).get("phase") in ("Completed", "Aborted"),
        "v2 finished", op, timeout=1500,
    )  # fmt: skip
    assert obj["status"]["phase"] == "Completed", obj["status"]
    assert obj["status"]["counts"]["healthy"] == 2
    wait_until(lambda: _on(api, ns, "2.0.0", digests2), timeout=300, what="v2 everywhere",
               alive=alive)  # fmt: skip
    for device in world["devices"]:
        assert _answers(device, v2[0]), f"{device.name} answers with v2"

    # v3: new weights with v2's probe, which therefore fails on the device
    _put_model(crds, ns, "3.0.0", v3, v2[0])
    _built(api, ns, "3.0.0", op)
    h.apply_rollout(crds, ns, "v3", version="3.0.0", maxUnavailable="1",
                    canary={"steps": [{"setWeight": 50}, {"pause": {}}]})  # fmt: skip
    obj = h.wait_rollout(
        api, ns, "v3", lambda o: (o.get("status") or {}).get("phase") in ("Completed", "Aborted"),
        "v3 aborted", op, timeout=1500,
    )  # fmt: skip
    assert obj["status"]["phase"] == "Aborted", obj["status"]
    assert h.cond(obj, "Aborted")["reason"] == "FailureThresholdExceeded"
    wait_until(lambda: _on(api, ns, "2.0.0", digests2), timeout=600, what="back on v2",
               alive=alive)  # fmt: skip
    for device in world["devices"]:
        assert _answers(device, v2[0]), f"{device.name} answers with v2 after the rollback"
    assert h.get(api, ns, "rollouts", "v2")["status"]["phase"] == "Completed"
