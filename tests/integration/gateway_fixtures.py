"""Fixtures for the gateway tests: the gateway namespace with its PKI, a running replica,
and a :class:`Fleet` helper that makes EdgeDevices, tokens and desired state the way
users and the rollout controller do (kubectl, server-side apply) and reads them back."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from edgefleet.clients import tokens
from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
from edgefleet.testing.procs import wait_until
from edgefleet.testing.simdevice import SimDevice

GW_NS = "edgefleet-system"
DIGEST = "sha256:" + "ab" * 32
DIGEST2 = "sha256:" + "cd" * 32


class Fleet:
    def __init__(self, cp: Any, namespace: str, gateway: GatewayReplica) -> None:
        self.cp = cp
        self.namespace = namespace
        self.gateway = gateway
        self.api = config.new_client_from_config(config_file=str(cp.kubeconfig))
        self._ca_hash: str | None = None
        # One event loop for the test: simulated devices keep their connections on it.
        self.loop = asyncio.new_event_loop()
        self.sims: list[SimDevice] = []

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def drive_until(self, check: Any, *, timeout: float, what: str, tick: float = 0.1) -> None:
        """Run the devices' event loop ``tick`` seconds at a time until ``check()`` holds
        (their tasks only make progress while the loop runs); fail after ``timeout``."""
        wait_until(
            lambda: self.run(asyncio.sleep(tick)) or check(), timeout=timeout, what=what, interval=0
        )

    def close(self) -> None:
        for sim in self.sims:
            sim.close()
        self.loop.run_until_complete(asyncio.sleep(0.05))  # let the transports close
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    @property
    def ca_hash(self) -> str:
        if self._ca_hash is None:
            self._ca_hash = self.gateway.pki().serving_ca_hash()
        return self._ca_hash

    def device(self, name: str, platform: str = "linux/arm64", **spec: Any) -> str:
        body = {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"platform": platform, **spec},
        }
        self.cp.kubectl("apply", "--server-side", "-f", "-", input_text=json.dumps(body))
        return name

    def token(self, name: str, namespace: str | None = None, **kw: Any) -> str:
        made = tokens.create_token(
            self.api,
            gateway_namespace=GW_NS,
            namespace=namespace or self.namespace,
            device=name,
            ca_hash=self.ca_hash,
            **kw,
        )
        return str(made)

    def sim(self, name: str, platform: str = "linux/arm64", **kw: Any) -> SimDevice:
        sim = SimDevice("127.0.0.1", self.gateway.port, self.namespace, name, platform, **kw)
        self.sims.append(sim)
        return sim

    def enrolled(self, name: str, platform: str = "linux/arm64", **spec: Any) -> SimDevice:
        self.device(name, platform, **spec)
        sim = self.sim(name, platform)
        result = self.run(sim.enroll(self.token(name)))
        assert result.status == 200, result.body
        return sim

    def get(self, name: str) -> dict[str, Any]:
        out = self.cp.kubectl("get", "edgedevice", name, "-n", self.namespace, "-o", "json")
        doc: dict[str, Any] = json.loads(out.stdout)
        return doc

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        conds = (self.get(name).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == type_), None)

    def wait_condition(self, name: str, type_: str, status: str, timeout: float = 30) -> None:
        wait_until(
            lambda: (self.condition(name, type_) or {}).get("status") == status,
            timeout=timeout,
            what=f"{name} {type_}={status}",
            interval=0.2,
        )

    def set_desired(self, name: str, revision: int, models: dict[str, str]) -> None:
        """Write status.desired as the rollout controller does (its own field manager)."""
        workloads = [
            {
                "model": model,
                "version": version,
                "repository": f"edgefleet/models/{self.namespace}/{model}",
                "indexDigest": DIGEST,
                "imageDigest": DIGEST2,
                "config": {"THRESHOLD": "0.5"},
            }
            for model, version in models.items()
        ]
        body = {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": name, "namespace": self.namespace},
            "status": {"desired": workloads, "desiredRevision": revision},
        }
        self.cp.kubectl(
            "apply", "--server-side", "--subresource=status", "--field-manager=edgefleet-rollouts",
            "-f", "-", input_text=json.dumps(body),
        )  # fmt: skip

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.cp.kubectl(
            "patch", "edgedevice", name, "-n", self.namespace, "--type=merge",
            "-p", json.dumps({"spec": spec}),
        )  # fmt: skip


@pytest.fixture(scope="module")
def gateway_namespace(crds) -> str:
    crds.kubectl("create", "namespace", GW_NS, check=False)
    api = config.new_client_from_config(config_file=str(crds.kubeconfig))
    ensure_signing_key(client.CoreV1Api(api), GW_NS, "edgefleet-signing-key")
    return GW_NS


@pytest.fixture(scope="module")
def gateway(crds, gateway_namespace) -> Iterator[GatewayReplica]:
    with GatewayReplica(loopback_config(gateway_namespace, "gw-a"), crds.kubeconfig) as gw:
        yield gw


@pytest.fixture
def fleet(crds, gateway) -> Iterator[Fleet]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    crds.kubectl("create", "namespace", name)
    made = Fleet(crds, name, gateway)
    try:
        yield made
    finally:
        made.close()
        crds.kubectl("delete", "namespace", name, "--wait=false", check=False)
