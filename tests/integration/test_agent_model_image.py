"""The agent pulls a model image built and signed by the operator's daemonless builder
(Debian base, runtime layer with the platform wheels, model layer) through the real
gateway: Ready with the digest; then a weights-only update, for which the agent must
download only the new model layer (and a few KiB of documents)."""

from __future__ import annotations

from edgefleet.clients.imagebuilder import BuildResult, ImageBuilder
from edgefleet.testing.desired import apply_desired
from edgefleet_node.agent.simulated import SimulatedRuntime
from tests.integration.agent_fixtures import Running, build_mlp, enrol
from tests.integration.gateway_fixtures import Fleet


def _build(builder: ImageBuilder, model_files, fleet: Fleet, seed: int, version: str):
    _, result = build_mlp(
        builder, model_files, fleet, "mlp", seed=seed, version=version, target_bytes=2 * 1024 * 1024
    )
    return result


def _desire(fleet: Fleet, revision: int, result: BuildResult, version: str) -> None:
    (image,) = result.images
    workload = {
        "model": "mlp",
        "version": version,
        "repository": result.repository.partition("/")[2],
        "indexDigest": result.index_digest,
        "imageDigest": image.digest,
        "config": {"EDGEFLEET_THRESHOLD": "0.5"},
    }
    apply_desired(fleet.cp, fleet.namespace, "dev-m", revision, [workload])


def test_an_operator_built_model_and_a_weights_only_update(
    agent_fleet, agent_gateway, model_builder, model_files, tmp_path
) -> None:
    first = _build(model_builder, model_files, agent_fleet, seed=11, version="1.0.0")
    second = _build(model_builder, model_files, agent_fleet, seed=12, version="1.0.1")
    state = enrol(agent_fleet, "dev-m", f"https://127.0.0.1:{agent_gateway.port}", tmp_path / "s")
    rt = SimulatedRuntime()
    _desire(agent_fleet, 1, first, "1.0.0")
    with Running(state, rt) as agent:
        agent_fleet.wait_condition("dev-m", "Ready", "True", timeout=120)
        assert [i.manifest_digest for i in rt.running()] == [first.images[0].digest]
        full = agent.activator.timings.bytes_received
        _desire(agent_fleet, 2, second, "1.0.1")
        (new,) = second.images
        agent_fleet.wait_condition("dev-m", "Ready", "True", timeout=120)
        current = agent_fleet.get("dev-m")["status"]["current"]
        assert [c["imageDigest"] for c in current] == [new.digest]
        update = agent.activator.timings.bytes_received
    ratio = update / new.model_layer_bytes
    assert ratio <= 1.05, (update, new.model_layer_bytes, full)
    assert full > 10 * new.model_layer_bytes  # the first pull had the base and runtime too
    print(
        f"\nweights-only update: {update} bytes / model layer {new.model_layer_bytes} = "
        f"{ratio:.4f}; first pull {full} bytes"
    )
