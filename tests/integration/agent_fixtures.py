"""Shared pieces of the agent integration tests: a gateway replica that proxies the
test registry, a fleet namespace, the image signing key, the operator's image builder
and a model built with it, the test's own Docker SDK client, an agent in a thread."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from kubernetes import client, config

from edgefleet.api.inferencemodel import InferenceModelSpec
from edgefleet.clients.imagebuilder import BuilderSettings, BuildResult, ImageBuilder
from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.testing.desired import apply_desired
from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
from edgefleet.testing.models import ModelFixture, make_mlp
from edgefleet.testing.procs import free_port
from edgefleet.testing.tinyimage import PushedImage
from edgefleet_node.agent import activate, cli, store
from edgefleet_node.agent import config as agent_config
from edgefleet_node.agent.loop import Agent, LoopSettings
from edgefleet_node.agent.simulated import SimulatedRuntime
from edgefleet_node.protocol import enroll
from tests.conftest import BASE_REPO, BASE_TAG
from tests.integration.gateway_fixtures import GW_NS, Fleet

PLATFORM = "linux/amd64"
SETTINGS = LoopSettings(
    poll_wait=5,
    report_interval=1.0,
    backoff_base=0.2,
    backoff_cap=2.0,
    activation=activate.Settings(stall_timeout=10, probe_timeout=10, disk_reserve=0),
)


@pytest.fixture(scope="module")
def image_signing_key(crds, gateway_namespace):
    api = config.new_client_from_config(config_file=str(crds.kubeconfig))  # type: ignore[no-untyped-call]
    return ensure_signing_key(client.CoreV1Api(api), GW_NS, "edgefleet-signing-key")


def gateway_config(registry, port: int) -> Any:
    import dataclasses

    return dataclasses.replace(
        loopback_config(GW_NS, "gw-agent"),
        port=port,
        registry_url=registry.url,
        registry_ca=str(registry.ca_path),
    )


@pytest.fixture
def agent_gateway(crds, gateway_namespace, registry) -> Iterator[GatewayReplica]:
    cfg = gateway_config(registry, free_port())
    with GatewayReplica(cfg, crds.kubeconfig) as gw:
        yield gw


@pytest.fixture
def agent_fleet(crds, agent_gateway) -> Iterator[Fleet]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    crds.kubectl("create", "namespace", name)
    made = Fleet(crds, name, agent_gateway)
    try:
        yield made
    finally:
        made.close()
        crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


def set_desired(
    fleet: Fleet, device: str, revision: int, image: PushedImage, model: str, version: str
) -> None:
    workload = {
        "model": model,
        "version": version,
        "repository": image.repository,
        "indexDigest": image.index_digest,
        "imageDigest": image.manifests[PLATFORM],
        "config": {"THRESHOLD": "0.5"},
    }
    apply_desired(fleet.cp, fleet.namespace, device, revision, [workload])


@pytest.fixture
def model_builder(
    registry_client, base_index, image_signing_key, builder_cache
) -> Iterator[ImageBuilder]:
    """The operator's daemonless builder on the test registry and base image."""
    settings = BuilderSettings(
        cache_dir=builder_cache, base_repository=BASE_REPO, base_reference=BASE_TAG
    )
    with httpx.Client(timeout=30) as http:
        yield ImageBuilder(registry_client, image_signing_key, settings, http=http)


def build_mlp(
    builder: ImageBuilder,
    model_files: tuple[Path, str],
    fleet: Fleet,
    name: str,
    *,
    seed: int,
    version: str,
    target_bytes: int,
) -> tuple[ModelFixture, BuildResult]:
    """A fresh ONNX MLP served by ``model_files``, built into ``fleet``'s namespace."""
    directory, base_url = model_files
    path = directory / f"model-{uuid.uuid4().hex[:8]}.onnx"
    fixture = make_mlp(path, target_bytes=target_bytes, seed=seed)
    spec = InferenceModelSpec.model_validate(
        {
            "version": version,
            "platforms": [PLATFORM],
            "source": {"url": {"url": f"{base_url}/{path.name}", "sha256": fixture.sha256}},
        }
    )
    return fixture, builder.build(fleet.namespace, name, spec)


@pytest.fixture
def engine(docker_engine) -> Iterator[docker.DockerClient]:
    """The test's own view of the engine (the docker SDK, not the runtime's client)."""
    sdk = docker.from_env(timeout=120)
    try:
        yield sdk
    finally:
        sdk.close()


class Running:
    def __init__(
        self, state: store.StateDir, runtime: SimulatedRuntime, settings: LoopSettings = SETTINGS
    ) -> None:
        self.agent = Agent(state, runtime, settings)
        self.thread = threading.Thread(target=self.agent.run, daemon=True)

    def __enter__(self) -> Agent:
        self.thread.start()
        return self.agent

    def __exit__(self, *exc: object) -> None:
        self.agent.stop()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


def enrol(fleet: Fleet, device: str, url: str, root: Path) -> store.StateDir:
    fleet.device(device, PLATFORM)
    conf = agent_config.Config(state_dir=root, platform=PLATFORM)
    cli.enroll_device(conf, url, enroll.BootstrapToken.parse(fleet.token(device)))
    return store.StateDir(root)


def current_workloads(fleet: Fleet, device: str) -> list[dict[str, Any]]:
    return (fleet.get(device).get("status") or {}).get("current") or []


def connection(state: store.StateDir) -> str | None:
    doc = store.read_json(state.status) or {}
    return doc.get("connection")
