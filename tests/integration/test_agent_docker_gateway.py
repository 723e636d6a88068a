"""The agent with the Docker runtime against the real gateway, API server and TLS
registry, with model images built and signed by the operator's builder.

- keep and collect: v1 → v2 → v3 keeps v2's image (engine) and blobs (store) for
  rollback and removes v1's; rolling back to v2 downloads only the small documents
  and reloads nothing;
- workload metrics: inference requests sent to the workload arrive in the
  EdgeDevice's ``status.current`` (``requests``, ``p95LatencyMs``);
- all or none on the engine: two workloads, the second failing its probe: the first
  new one is started and stopped again, both old containers keep serving.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from edgefleet.clients.imagebuilder import BuildResult
from edgefleet.domain import oci
from edgefleet.testing.desired import apply_desired
from edgefleet.testing.models import ModelFixture
from edgefleet.testing.procs import wait_until
from edgefleet_node.agent import activate, docker_spec, store
from edgefleet_node.agent.docker_runtime import MANAGED_LABEL, DockerRuntime
from edgefleet_node.agent.loop import Agent
from edgefleet_node.agent.workload_http import request
from tests.integration.agent_fixtures import SETTINGS, build_mlp, current_workloads, enrol
from tests.integration.gateway_fixtures import Fleet

DEVICE = "dev-d"
# A real model server needs longer than a simulated one to load and answer.
DOCKER = dataclasses.replace(
    SETTINGS, activation=activate.Settings(stall_timeout=30, probe_timeout=90, disk_reserve=0)
)


@contextlib.contextmanager
def running(state: store.StateDir, rt: DockerRuntime) -> Iterator[Agent]:
    agent = Agent(state, rt, DOCKER)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()


class Model:
    def __init__(self, fixture: ModelFixture, result: BuildResult) -> None:
        self.fixture, self.result = fixture, result
        (self.image,) = result.images

    @property
    def digest(self) -> str:
        return self.image.digest

    @property
    def repository(self) -> str:
        return self.result.repository.partition("/")[2]


@pytest.fixture
def build(model_builder, model_files, agent_fleet):
    def make(name: str, seed: int, version: str) -> Model:
        built = build_mlp(
            model_builder,
            model_files,
            agent_fleet,
            name,
            seed=seed,
            version=version,
            target_bytes=1024 * 1024,
        )
        return Model(*built)

    return make


@pytest.fixture
def runtime(engine) -> Iterator[DockerRuntime]:
    """A Docker runtime with its own scope; its containers and images removed after."""
    scope = f"t{uuid.uuid4().hex[:8]}"
    rt = DockerRuntime(scope=scope)
    try:
        yield rt
    finally:
        managed = f"{MANAGED_LABEL}=edgefleet-node.{scope}"
        for container in engine.containers.list(all=True, filters={"label": managed}):
            container.remove(force=True)
        for image in engine.images.list(name=docker_spec.repository(scope)):
            engine.images.remove(image.id, force=True)


def _probe(fixture: ModelFixture, *, wrong: bool = False) -> dict[str, Any]:
    expected = [float(v) + (1.0 if wrong else 0.0) for v in fixture.expected_output.ravel()]
    return {
        "inputName": fixture.input_name,
        "shape": [int(n) for n in fixture.probe_input.shape],
        "values": [float(v) for v in fixture.probe_input.ravel()],
        "outputName": fixture.output_name,
        "expected": expected,
        "tolerance": 1e-3,
    }


def _desire(fleet: Fleet, revision: int, *entries: tuple[str, Model, str, bool]) -> None:
    """``entries``: (workload name, model, version, wrong probe answer)."""
    desired = [
        {
            "model": name,
            "version": version,
            "repository": model.repository,
            "indexDigest": model.result.index_digest,
            "imageDigest": model.digest,
            "probe": _probe(model.fixture, wrong=wrong),
            "config": {"EDGEFLEET_THRESHOLD": "0.5"},
        }
        for name, model, version, wrong in entries
    ]
    apply_desired(fleet.cp, fleet.namespace, DEVICE, revision, desired)


def _running(runtime: DockerRuntime) -> dict[str, str]:
    return {i.workload: i.manifest_digest for i in runtime.running()}


def _current(fleet: Fleet) -> dict[str, str]:
    return {c["model"]: c["imageDigest"] for c in current_workloads(fleet, DEVICE)}


def _is_current(fleet: Fleet, wanted: dict[str, str]) -> bool:
    return _current(fleet) == wanted


def _config_and_layers(registry_client, model: Model) -> tuple[str, list[str]]:
    data, media_type, _ = registry_client.get_manifest(model.repository, model.digest)
    manifest = oci.parse_manifest(data, media_type, expected_digest=model.digest)
    return manifest.config.digest, [d.digest for d in manifest.layers]


def _tag_time(engine: docker.DockerClient, config_digest: str) -> str:
    return str(engine.images.get(config_digest).attrs["Metadata"].get("LastTagTime"))


def test_the_previous_image_is_kept_on_the_engine_and_a_rollback_reloads_nothing(
    agent_fleet, agent_gateway, registry_client, build, runtime, engine, tmp_path
) -> None:
    models = [build("mlp", seed, f"1.0.{seed}") for seed in (21, 22, 23)]
    v1, v2, v3 = models
    config = {m.digest: _config_and_layers(registry_client, m) for m in models}
    state = enrol(agent_fleet, DEVICE, f"https://127.0.0.1:{agent_gateway.port}", tmp_path / "s")
    with running(state, runtime) as agent:
        for revision, model in enumerate(models, start=1):
            _desire(agent_fleet, revision, ("mlp", model, f"1.0.{revision}", False))
            wait_until(
                functools.partial(_is_current, agent_fleet, {"mlp": model.digest}),
                timeout=120,
                what=f"v{revision} current",
            )
        assert _running(runtime) == {"mlp": v3.digest}
        wait_until(
            lambda: (
                not engine.images.list(filters={"reference": f"*:{v1.digest[7:]}"})
                and not _has_image(engine, config[v1.digest][0])
            ),
            timeout=60,
            what="v1's image removed from the engine",
        )
        for kept in (v2, v3):
            assert _has_image(engine, config[kept.digest][0]), "kept for rollback"
        v1_model_layer = config[v1.digest][1][-1]
        assert not state.blob(v1.digest).exists()
        assert not state.blob(v1_model_layer).exists(), "v1's weights left the store"
        for kept in (v2, v3):
            for digest in (kept.digest, config[kept.digest][0], *config[kept.digest][1]):
                assert state.blob(digest).exists(), digest
        assert not list(state.blobs.glob("*.partial"))

        tagged = _tag_time(engine, config[v2.digest][0])
        _desire(agent_fleet, 4, ("mlp", v2, "1.0.2", False))  # roll back
        wait_until(
            lambda: _current(agent_fleet) == {"mlp": v2.digest},
            timeout=120,
            what="rolled back to v2",
        )
        agent_fleet.wait_condition(DEVICE, "Ready", "True", timeout=60)
        timings = agent.activator.timings
        assert 0 < timings.bytes_received < 64 * 1024, "only index, manifest, signature"
        assert timings.bytes_received < v2.image.model_layer_bytes // 10
        assert _tag_time(engine, config[v2.digest][0]) == tagged, "the image was not reloaded"
        assert _running(runtime) == {"mlp": v2.digest}
        assert _has_image(engine, config[v3.digest][0]), "v3 is now the rollback image"
    print(
        f"\nrollback: {timings.bytes_received} bytes received, start {timings.start:.2f}s, "
        f"probe {timings.probe:.2f}s"
    )


def _has_image(engine: docker.DockerClient, config_digest: str) -> bool:
    try:
        engine.images.get(config_digest)
    except docker.errors.ImageNotFound:
        return False
    return True


def test_workload_metrics_reach_the_edge_device(
    agent_fleet, agent_gateway, build, runtime, tmp_path
) -> None:
    model = build("mlp", 31, "1.0.0")
    state = enrol(agent_fleet, DEVICE, f"https://127.0.0.1:{agent_gateway.port}", tmp_path / "s")
    _desire(agent_fleet, 1, ("mlp", model, "1.0.0", False))
    sent = 25
    with running(state, runtime) as agent:
        agent_fleet.wait_condition(DEVICE, "Ready", "True", timeout=120)
        instance = agent.activator.current["mlp"].instance
        assert instance.port is not None
        body = json.dumps(model.fixture.probe_request()).encode()
        for _ in range(sent):
            answer = request("127.0.0.1", instance.port, "POST", "/v1/predict", body, 30)
            assert answer.status == 200
            assert model.fixture.matches(json.loads(answer.body)["outputs"])

        def reported() -> dict[str, Any] | None:
            (cur,) = current_workloads(agent_fleet, DEVICE)
            done = (cur.get("requests") or 0) >= sent and (cur.get("p95LatencyMs") or 0) > 0
            return cur if done else None

        wait_until(lambda: reported() is not None, timeout=60, what=f"{sent} requests reported")
        cur = reported()
        assert cur is not None
    assert cur["imageDigest"] == model.digest
    assert cur["errors"] == 0
    print(f"\nEdgeDevice current: requests {cur['requests']}, p95 {cur['p95LatencyMs']} ms")


def test_two_workloads_on_the_engine_activate_all_or_none(
    agent_fleet, agent_gateway, build, runtime, engine, tmp_path
) -> None:
    m1, m2 = build("mlp", 41, "1.0.0"), build("mlp", 42, "2.0.0")
    state = enrol(agent_fleet, DEVICE, f"https://127.0.0.1:{agent_gateway.port}", tmp_path / "s")
    _desire(agent_fleet, 1, ("detector", m1, "1", False), ("counter", m1, "1", False))
    with running(state, runtime) as agent:
        agent_fleet.wait_condition(DEVICE, "Ready", "True", timeout=120)
        before = {i.workload: i.id for i in runtime.running()}
        assert set(before) == {"detector", "counter"}
        # The counter's new version answers wrongly: the detector's must not stay.
        _desire(agent_fleet, 2, ("detector", m2, "2", False), ("counter", m2, "2", True))
        wait_until(
            lambda: (
                (agent_fleet.condition(DEVICE, "UpdateFailed") or {}).get("reason") == "ProbeFailed"
            ),
            timeout=120,
            what="UpdateFailed ProbeFailed",
        )
        failed = agent_fleet.condition(DEVICE, "UpdateFailed") or {}
        assert "counter" in failed["message"], failed
        assert {i.workload: i.id for i in runtime.running()} == before, "the old pair serves"
        assert _current(agent_fleet) == {"detector": m1.digest, "counter": m1.digest}
        scope = f"edgefleet-node.{runtime._scope}"
        containers = engine.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}={scope}"})
        assert sorted(c.id for c in containers) == sorted(before.values()), "new ones removed"
        port = agent.activator.current["detector"].instance.port
        assert port is not None
        body = json.dumps(m1.fixture.probe_request()).encode()
        answer = request("127.0.0.1", port, "POST", "/v1/predict", body, 30)
        assert m1.fixture.matches(json.loads(answer.body)["outputs"])
