"""The fleet part of ``edgefleet demo``: real devices, a canary, an inference, a rollback.

Given the control plane, the registry with the base images, the operator (builds,
signs, runs the rollout controller) and the example model at 1.0.0 Ready, this starts
``edgefleet gateway``, three devices as containers running the agent's own image (two
linux/amd64, one linux/arm64 under qemu) enrolled with tokens from ``edgefleet token
create``, rolls 1.0.0 out, then a canary of 2.0.0 shown live by ``kubectl edgefleet
rollout status --watch``, asks a device's workload for an inference, and finally rolls
out 3.0.0 — weights whose answer no longer matches the probe — which fails on the
first device, aborts, and puts the devices back on 2.0.0 by themselves.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgefleet.testing import agentcontainers as ac
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.models import ModelFixture, make_mlp
from edgefleet.testing.procs import free_port, wait_until

__all__ = ["DEVICES", "FleetStory", "say"]

NS = "edgefleet-demo"
MODEL = "defect-detector"
#: name, platform: two x86 boxes and a Raspberry-Pi-class arm64 board (qemu here)
DEVICES = (
    ("berlin-line1-x86", "linux/amd64"),
    ("berlin-line2-x86", "linux/amd64"),
    ("berlin-line1-pi-01", "linux/arm64"),
)
SLOW = {"linux/amd64": 1.0, "linux/arm64": 4.0}
PROBE_TOLERANCE = 0.05  # int8 weights on amd64 answer within a few hundredths
ROLLOUT_TIMEOUT = 2400  # seconds; arm64 under qemu on a busy machine is slow


def say(text: str) -> None:
    """A plain-language line between the steps."""
    print(f"\n>>> {text}", flush=True)


class FleetStory:
    """The steps after the model's first build; everything it starts is on ``stack``."""

    def __init__(
        self,
        cp: ControlPlane,
        registry: Any,
        registry_client: Any,
        work: Path,
        files_url: str,
        model: dict[str, Any],
        alive: Callable[[], None],
        stack: contextlib.ExitStack,
    ) -> None:
        self.cp, self.registry, self.registry_client = cp, registry, registry_client
        self.work, self.files_url, self.model = work, files_url, model
        self.operator_alive, self.stack = alive, stack
        self.devices: list[ac.DeviceContainer] = []
        self.gateway: ac.GatewayProcess | None = None

    # -- set-up ------------------------------------------------------------------------
    def start_gateway(self) -> None:
        port = free_port()
        env = ac.gateway_env(self.cp.kubeconfig, self.registry, port, "demo")
        self.gateway = ac.GatewayProcess(env, self.work, port)
        self.stack.callback(self.gateway.stop)
        self.gateway.start(self.cp)
        say(f"The device gateway answers at {self.gateway.url} (mTLS; log {self.work}).")

    def start_devices(self, cache: Path) -> None:
        import docker

        from edgefleet.domain import signing
        from edgefleet.testing import engine

        eng = engine.ensure_engine()
        self.stack.callback(eng.stop)
        client = docker.from_env(timeout=300)
        self.stack.callback(client.close)
        self.stack.enter_context(ac.trusted_registry(self.registry))
        say("Building the agent's own image for linux/amd64 and linux/arm64 (first run: minutes).")
        images = ac.build_agent_image(
            self.registry_client, signing.generate_key(), cache / "app",
            ("linux/amd64", "linux/arm64"), "demo", progress=lambda m: print(f"    {m}"),
        )  # fmt: skip

        def remove_images() -> None:
            for ref in images.values():
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(ref, force=True)

        self.stack.callback(remove_images)
        self.stack.callback(self._remove_devices)
        assert self.gateway is not None
        for name, platform in DEVICES:
            self.cp.kubectl("apply", "-f", "-", input_text=json.dumps({
                "apiVersion": "edgefleet.io/v1alpha1", "kind": "EdgeDevice",
                "metadata": {"name": name, "namespace": NS,
                             "labels": {"edgefleet.io/site": "berlin"}},
                "spec": {"platform": platform},
            }))  # fmt: skip
            say(f"Device {name} ({platform}): a token from `edgefleet token create`, then "
                "`edgefleet-node enroll` and `edgefleet-node run` in a container.")  # fmt: skip
            # a fresh scope per run: a crashed earlier run's volume is never reused
            scope = f"{name.replace('-', '')[:24]}{uuid.uuid4().hex[:6]}"
            self.devices.append(ac.start_device(
                client, images[platform], platform, self.gateway, NS, name, scope,
                slow=SLOW[platform],
            ))  # fmt: skip
        wait_until(self._all_online, timeout=600, what="the devices online", alive=self.alive)
        say("All three devices are enrolled and online:")
        self.plugin("device", "list")

    def _remove_devices(self) -> None:
        for device in self.devices:
            device.remove()
        if self.devices:
            ac.remove_model_images(self.devices[0].client, NS)

    def alive(self) -> None:
        self.operator_alive()
        for device in self.devices:
            device.alive()

    # -- reads -------------------------------------------------------------------------
    def _get(self, plural: str, name: str = "") -> dict[str, Any]:
        args = ["get", plural, *([name] if name else []), "-n", NS, "-o", "json"]
        got: dict[str, Any] = json.loads(self.cp.kubectl(*args).stdout)
        return got

    def _all_online(self) -> bool:
        items = self._get("edgedevices.edgefleet.io")["items"]
        online = {
            i["metadata"]["name"]
            for i in items
            if any(
                c["type"] == "Online" and c["status"] == "True"
                for c in (i.get("status") or {}).get("conditions", [])
            )
        }
        return online >= {n for n, _ in DEVICES}

    def devices_on(self, version: str) -> bool:
        """Every demo device wants and runs ``version`` and is Ready."""
        for item in self._get("edgedevices.edgefleet.io")["items"]:
            status = item.get("status") or {}
            ready = any(c["type"] == "Ready" and c["status"] == "True"
                        for c in status.get("conditions", []))  # fmt: skip
            want = f"{MODEL}={version}"  # the summaries read model=version
            if (status.get("desiredVersion"), status.get("currentVersion"), ready) != (
                want, want, True,
            ):  # fmt: skip
                return False
        return True

    # -- actions -----------------------------------------------------------------------
    def plugin(self, *args: str) -> int:
        """``kubectl edgefleet …`` (the plugin users install), output straight through."""
        print(f"$ kubectl edgefleet -n {NS} {' '.join(args)}", flush=True)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        return subprocess.run(
            [str(self.cp.tools.kubectl), "edgefleet", f"--kubeconfig={self.cp.kubeconfig}",
             "-n", NS, *args],
            env=env, check=False, timeout=ROLLOUT_TIMEOUT + 60,
        ).returncode  # fmt: skip

    def new_version(self, version: str, seed: int, probe: ModelFixture | None) -> ModelFixture:
        """Put the model at ``version`` with fresh weights; wait until it is built.
        ``probe``: another version's probe (its expected answer), else the weights' own."""
        fixture = make_mlp(self.work / f"{MODEL}-{version}.onnx", target_bytes=4_000_000,
                           seed=seed)  # fmt: skip
        self.model["spec"]["version"] = version
        self.model["spec"]["source"] = {
            "url": {"url": f"{self.files_url}/{fixture.path.name}", "sha256": fixture.sha256}
        }
        self.model["spec"]["probe"] = (probe or fixture).probe_spec(tolerance=PROBE_TOLERANCE)
        self.cp.kubectl("apply", "-f", "-", input_text=json.dumps(self.model))

        def built() -> bool:
            obj = self._get("inferencemodels.edgefleet.io", MODEL)
            status = obj.get("status") or {}
            return status.get("observedGeneration") == obj["metadata"]["generation"] and any(
                c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
            )

        wait_until(built, timeout=1800, what=f"{MODEL} {version} built", alive=self.alive)
        return fixture

    def rollout(self, name: str, version: str, steps: list[dict[str, Any]]) -> int:
        """Apply a Rollout and follow it live until it finishes; the plugin's exit code."""
        self.cp.kubectl("apply", "-f", "-", input_text=json.dumps({
            "apiVersion": "edgefleet.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"model": {"name": MODEL, "version": version},
                     "selector": {"matchLabels": {"edgefleet.io/site": "berlin"}},
                     "canary": {"steps": steps}, "maxUnavailable": "1",
                     "failureThreshold": "10%", "progressDeadline": "40m",
                     "healthGate": {"minHealthyDuration": "5s"}},
        }))  # fmt: skip
        return self.plugin("rollout", "status", name, "--watch", "--timeout", str(ROLLOUT_TIMEOUT))

    def infer(self, fixture: ModelFixture) -> None:
        """One inference request to the first device's workload; print the answer."""
        from edgefleet_node.agent.workload_http import request

        device = self.devices[0]
        port = device.workload_port(MODEL)
        if port is None:
            raise RuntimeError(f"{device.name} runs no {MODEL} workload")
        body = json.dumps(fixture.probe_request())
        print(f"$ curl -s -X POST http://127.0.0.1:{port}/v1/predict -d '{body}'", flush=True)
        answer = request("127.0.0.1", port, "POST", "/v1/predict", body.encode(), 60)
        print(answer.body.decode(errors="replace"), flush=True)
        if answer.status != 200:
            raise RuntimeError(f"the workload on {device.name} answered {answer.status}")
        import numpy as np

        got = np.asarray(json.loads(answer.body)["outputs"][fixture.output_name], np.float32)
        error = float(np.abs(got - fixture.expected_output).max())
        say(f"{device.name}'s workload answered (HTTP 200): within {error:.4f} of what "
            f"{fixture.path.name} computes in float32 (this box runs int8 weights).")  # fmt: skip
        if error > PROBE_TOLERANCE:
            raise RuntimeError(f"{device.name} answered {error} away from the expected answer")
