"""Real agents in containers of each architecture against the real gateway.

Per platform (linux/amd64, and linux/arm64 under qemu): the agent's own image (built by
our daemonless builder, pulled from the local TLS registry) runs with the Docker
socket, a named volume as its state dir and host networking; it enrols with a token
from ``edgefleet token create`` at ``edgefleet gateway`` (its own process), pulls a
signed model image built by the operator's builder through the gateway's ``/v2/``, and
runs it. Then: the EdgeDevice says ``Ready=True`` with the digest, and an inference
request to the workload answers correctly; a model whose probe fails is rolled back
(``UpdateFailed``) and the previous workload keeps answering; with the gateway down
the agent is killed and started again: the workload keeps answering, is adopted (same
container, same start time), and when the gateway is back the EdgeDevice is Ready with
the same digest and its ``reportSeq`` covers every report queued offline.

The rollout controller's part — writing ``status.desired`` with field manager
``edgefleet-rollouts`` — is done by the test itself, so this test exercises gateway,
agent and runtime, not rollout planning.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from edgefleet.api.inferencemodel import InferenceModelSpec
from edgefleet.clients.imagebuilder import BuilderSettings, ImageBuilder
from edgefleet.domain import nodeimage, signing
from edgefleet.testing import agentcontainers
from edgefleet.testing.agentcontainers import GATEWAY_NS, GatewayProcess, gateway_env
from edgefleet.testing.models import ModelFixture, make_mlp
from edgefleet.testing.procs import free_port, wait_until
from edgefleet_node.agent.docker_runtime import image_tag
from edgefleet_node.agent.workload_http import request

PLATFORMS = ("linux/amd64", "linux/arm64")
SLOW = {"linux/amd64": 1.0, "linux/arm64": 4.0}  # qemu: everything takes longer
# a report every 5 s (some are queued during the outage); reconnect within 10 s of return
AGENT_ENV = {"EDGEFLEET_NODE_REPORT_INTERVAL": "5", "EDGEFLEET_NODE_BACKOFF_CAP": "10"}


def _gateway_available() -> str | None:
    done = subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", "gateway", "--help"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return None if done.returncode == 0 else "`edgefleet gateway` is not available yet"


@pytest.fixture(scope="module")
def gateway(crds, registry, signing_key, tmp_path_factory) -> Iterator[GatewayProcess]:
    if (why := _gateway_available()) is not None:
        pytest.skip(why)
    crds.kubectl("create", "namespace", GATEWAY_NS, check=False)
    public = signing.public_key_pem(signing_key).decode()
    crds.kubectl(
        "create", "configmap", "edgefleet-signing-key-public", "-n", GATEWAY_NS,
        f"--from-literal=cosign.pub={public}", check=False,
    )  # fmt: skip
    port = free_port()
    env = gateway_env(crds.kubeconfig, registry, port, "gateway-e2e")
    # a report that moves only counters (and reportSeq) is written at most once per
    # lastSeen interval (4 h by default): short here, so reportSeq shows what arrived
    env["EDGEFLEET_GATEWAY_LAST_SEEN_INTERVAL"] = "10s"
    gw = GatewayProcess(env, tmp_path_factory.mktemp("gateway"), port)
    gw.start(crds)
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def docker_client(docker_engine) -> Iterator[Any]:
    client = docker.from_env(timeout=300)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def trusted_registry(registry) -> Iterator[None]:
    with agentcontainers.trusted_registry(registry):
        yield


@pytest.fixture(scope="module")
def agent_image(registry_client, base_index, signing_key, builder_cache) -> dict[str, str]:
    """The agent image reference per platform (by manifest digest: docker 20.10 keeps one
    local image per index reference, so pulling an index for a second platform is not
    enough to run that platform)."""
    return agentcontainers.build_agent_image(
        registry_client, signing_key, builder_cache / "app", PLATFORMS, "e2e"
    )


class Models:
    def __init__(self, good: ModelFixture, good_build, bad_build) -> None:
        self.good, self.good_build, self.bad_build = good, good_build, bad_build


@pytest.fixture(scope="module")
def models(registry_client, base_index, signing_key, builder_cache, model_files) -> Models:
    directory, base_url = model_files
    fixtures = []
    for seed in (101, 102):
        path = directory / f"agent-e2e-{seed}-{uuid.uuid4().hex[:6]}.onnx"
        fixtures.append((path, make_mlp(path, target_bytes=64 * 1024, seed=seed)))
    builds = []
    with httpx.Client(timeout=30) as http:
        builder = ImageBuilder(
            registry_client, signing_key, BuilderSettings(cache_dir=builder_cache), http=http
        )
        for version, (path, fixture) in zip(("1.0.0", "2.0.0"), fixtures, strict=True):
            spec = InferenceModelSpec.model_validate({
                "version": version, "platforms": list(PLATFORMS),
                "source": {"url": {"url": f"{base_url}/{path.name}", "sha256": fixture.sha256}},
            })  # fmt: skip
            builds.append(builder.build("e2e", "classifier", spec))
    return Models(fixtures[0][1], builds[0], builds[1])


def _desired(build, version: str, platform: str, probe: dict[str, Any]) -> dict[str, Any]:
    image = next(i for i in build.images if i.platform == platform)
    return {
        "model": "classifier",
        "version": version,
        "repository": build.repository.split("/", 1)[1],
        "indexDigest": build.index_digest,
        "imageDigest": image.digest,
        "probe": probe,
    }


def _apply_desired(cp, ns: str, device: str, workloads: list[dict[str, Any]], revision: int):
    doc = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": device, "namespace": ns},
        "status": {"desired": workloads, "desiredRevision": revision},
    }
    cp.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=edgefleet-rollouts",
        "--subresource=status", "-f", "-", input_text=json.dumps(doc),
    )  # fmt: skip


def _device(cp, ns: str, name: str) -> dict[str, Any]:
    return json.loads(cp.kubectl("get", "edgedevices.edgefleet.io", name, "-n", ns,
                                 "-o", "json").stdout)  # fmt: skip


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions", []):
        if cond["type"] == type_:
            return cond
    return {}


def _workloads(client) -> list[Any]:
    """Running workload containers (the tests run one device at a time)."""
    return list(client.containers.list(filters={"label": "io.edgefleet.workload=classifier"}))


def _answers(port: int, fixture: ModelFixture) -> bool:
    body = json.dumps(fixture.probe_request()).encode()
    try:
        answer = request("127.0.0.1", port, "POST", "/v1/predict", body, 30)
    except OSError:
        return False
    return answer.status == 200 and fixture.matches(json.loads(answer.body)["outputs"])


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_agent_in_a_container_runs_a_signed_model_and_survives_faults(
    crds, gateway, docker_client, trusted_registry, agent_image, models, platform, tmp_path
):
    slow = SLOW[platform]
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    device = f"dev-{platform.split('/')[1]}"
    crds.kubectl("create", "namespace", ns)
    crds.kubectl("apply", "-f", "-", input_text=json.dumps({
        "apiVersion": "edgefleet.io/v1alpha1", "kind": "EdgeDevice",
        "metadata": {"name": device, "namespace": ns},
        "spec": {"platform": platform},
    }))  # fmt: skip
    volume = docker_client.volumes.create(f"edgefleet-e2e-{uuid.uuid4().hex[:8]}")
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    agent = None
    common: dict[str, Any] = {
        "image": None,
        "network_mode": "host",
        "user": f"{nodeimage.AGENT_UID}:{nodeimage.AGENT_UID}",
        "group_add": [str(socket_gid)],
        "read_only": True,
        "tmpfs": {"/tmp": "rw,noexec,nosuid,size=16m"},
        "volumes": {
            volume.name: {"bind": f"/{nodeimage.STATE_DIR}", "mode": "rw"},
            "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
        },
    }
    try:
        docker_client.images.pull(agent_image[platform], platform=platform)
        pulled = docker_client.images.get(agent_image[platform])
        assert pulled.attrs["Architecture"] == platform.split("/")[1]
        common["image"] = pulled.id
        created = subprocess.run(
            [sys.executable, "-m", "edgefleet.cli", "token", "create", "--namespace", ns,
             device, "--gateway-namespace", GATEWAY_NS],
            capture_output=True, text=True, timeout=60, check=False, env=gateway.env,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        token_text = created.stdout.strip()
        enrolled = docker_client.containers.run(
            command=["enroll", "--gateway", gateway.url, "--token", token_text],
            remove=False, detach=True, **common,
        )  # fmt: skip
        result = enrolled.wait(timeout=int(300 * slow))
        logs = enrolled.logs().decode(errors="replace")
        enrolled.remove(force=True)
        assert result["StatusCode"] == 0, logs

        agent = docker_client.containers.run(
            command=["run"], detach=True, name=f"edgefleet-agent-{ns}", environment=AGENT_ENV,
            **common,
        )  # fmt: skip
        wait_until(
            lambda: _condition(_device(crds, ns, device), "Enrolled").get("status") == "True",
            timeout=120 * slow, what="Enrolled",
        )  # fmt: skip

        good = _desired(models.good_build, "1.0.0", platform, models.good.probe_spec(1e-3))
        _apply_desired(crds, ns, device, [good], revision=1)

        def ready_with_digest() -> bool:
            obj = _device(crds, ns, device)
            current = (obj.get("status") or {}).get("current") or []
            return _condition(obj, "Ready").get("status") == "True" and any(
                c.get("imageDigest") == good["imageDigest"] for c in current
            )

        wait_until(ready_with_digest, timeout=600 * slow, what=f"{platform} Ready",
                   alive=lambda: _alive(agent))  # fmt: skip
        running = _workloads(docker_client)
        assert len(running) == 1
        port = int(running[0].labels["io.edgefleet.port"])
        assert _answers(port, models.good)
        _report_rss(agent, platform)

        # a model whose probe fails: the previous one keeps running and answering
        # (version 2's weights differ, so version 1's probe answer is wrong for it)
        bad = _desired(models.bad_build, "2.0.0", platform, models.good.probe_spec(1e-3))
        _apply_desired(crds, ns, device, [bad], revision=2)
        wait_until(
            lambda: _condition(_device(crds, ns, device), "UpdateFailed").get("status") == "True",
            timeout=600 * slow, what="UpdateFailed after the bad probe",
            alive=lambda: _alive(agent),
        )  # fmt: skip
        failed = _condition(_device(crds, ns, device), "UpdateFailed")
        assert "Probe" in failed.get("reason", "") or "probe" in failed.get("message", ""), failed
        assert _answers(port, models.good), "the previous workload keeps answering"
        current = _device(crds, ns, device)["status"]["current"]
        assert [c["imageDigest"] for c in current] == [good["imageDigest"]]
        assert [c.id for c in _workloads(docker_client)] == [running[0].id]

        # the rollout controller's answer to a failed update: back to version 1 (the same
        # image and config: relabelled, not restarted)
        _apply_desired(crds, ns, device, [good], revision=3)
        wait_until(lambda: ready_with_digest() and _condition(
                       _device(crds, ns, device), "UpdateFailed").get("status") == "False",
                   timeout=120 * slow, what="Ready again with version 1",
                   alive=lambda: _alive(agent))  # fmt: skip
        assert [c.id for c in _workloads(docker_client)] == [running[0].id]

        # the gateway goes away, and meanwhile the agent is killed and started again: the
        # workload answers throughout and is adopted (the same container, never restarted);
        # when the gateway is back the device is Ready with the same digest and every
        # report queued offline has arrived
        workload = running[0]
        started_at = _started_at(workload)
        seq_before = _device(crds, ns, device)["status"].get("reportSeq", 0)
        gateway.stop()
        try:
            wait_until(lambda: _log_count(agent, "gateway unreachable") > 0,
                       timeout=180 * slow, what="the agent notices the gateway is gone",
                       alive=lambda: _alive(agent))  # fmt: skip
            unreachable = _log_count(agent, "gateway unreachable")
            agent_started = _started_at(agent)
            with ThreadPoolExecutor(1) as pool:
                restarted = pool.submit(lambda: (agent.kill(), agent.start()))
                wait_until(lambda: _answers(port, models.good) and restarted.done(),
                           timeout=120 * slow, what="the agent restarted",
                           alive=lambda: _still_answers(port, models.good))  # fmt: skip
                restarted.result()
            assert _started_at(agent) != agent_started, "the agent did not restart"

            def serving() -> None:
                _alive(agent)
                _still_answers(port, models.good)

            wait_until(lambda: _log_count(agent, "gateway unreachable") > unreachable,
                       timeout=180 * slow, what="the restarted agent runs offline",
                       alive=serving)  # fmt: skip
            shown = _node_status(agent)
            assert shown["connection"] == "Offline", shown
            assert [w["manifestDigest"] for w in shown["workloads"]] == [good["imageDigest"]]
            assert _started_at(workload) == started_at, "the workload was restarted"
            assert _answers(port, models.good), "the workload answers while offline"
            queued = _queued_seqs(volume)  # still offline: more may have been queued since
            assert len(queued) >= shown["queuedReports"] >= 1
            assert queued[0] > seq_before
        finally:
            gateway.start(crds)

        def back_with_every_report() -> bool:
            obj = _device(crds, ns, device)
            status = obj.get("status") or {}
            return (
                _condition(obj, "Ready").get("status") == "True"
                and [c.get("imageDigest") for c in status.get("current") or []]
                == [good["imageDigest"]]
                and status.get("reportSeq", 0) >= queued[-1]
                and all(seq > queued[-1] for seq in _queued_seqs(volume))  # acknowledged
            )

        wait_until(back_with_every_report, timeout=300 * slow,
                   what="Ready with the same digest and the offline reports",
                   alive=lambda: _alive(agent))  # fmt: skip
        # the restarted gateway took every queued report once: none twice, none skipped
        reports = "edgefleet_gateway_reports_total"
        assert gateway.metric(reports, {"outcome": "duplicate"}) == 0
        assert gateway.metric(reports, {"outcome": "gap"}) == 0
        assert gateway.metric(reports, {"outcome": "accepted"}) >= len(queued)
        assert _started_at(workload) == started_at, "the workload was restarted"
        assert _answers(port, models.good)
    finally:
        for container in docker_client.containers.list(
            all=True, filters={"label": "io.edgefleet.workload=classifier"}
        ):
            container.remove(force=True)
        if agent is not None:
            print(agent.logs(tail=60).decode(errors="replace"))
            agent.remove(force=True)
        volume.remove(force=True)
        # the images this test put into the engine: the agent's and the workloads'
        for build in (models.good_build, models.bad_build):
            for image in build.images:
                with contextlib.suppress(docker.errors.ImageNotFound):
                    docker_client.images.remove(image_tag(image.digest), force=True)
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(agent_image[platform], force=True)
        crds.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _started_at(container) -> str:
    container.reload()
    assert container.status == "running", container.status
    return str(container.attrs["State"]["StartedAt"])


def _still_answers(port: int, fixture: ModelFixture) -> None:
    if not _answers(port, fixture):
        raise AssertionError("the workload stopped answering")


def _node_status(agent) -> dict[str, Any]:
    """``edgefleet-node status -o json`` inside the agent's container."""
    code, out = agent.exec_run(["/usr/local/bin/edgefleet-node", "status", "-o", "json"])
    assert code == 0, out.decode(errors="replace")
    return dict(json.loads(out))


def _queued_seqs(volume) -> list[int]:
    """The sequence numbers of the reports queued in the agent's state volume."""
    volume.reload()
    reports = Path(volume.attrs["Mountpoint"]) / "reports"
    return sorted(int(p.stem) for p in reports.glob("*.json") if p.stem.isdigit())


def _log_count(container, event: str) -> int:
    return container.logs().decode(errors="replace").count(f'"event": "{event}"')


def _report_rss(container, platform: str) -> None:
    """Print the agent's resident memory while idle (long-polling); docs/benchmarks.md."""
    container.reload()
    pid = container.attrs["State"]["Pid"]
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    rss, peak = fields["VmRSS"].strip(), fields["VmHWM"].strip()
    print(f"MEASURE agent {platform} idle RSS {rss} (peak {peak})")


def _alive(container) -> None:
    container.reload()
    if container.status != "running":
        raise AssertionError(
            f"the agent container stopped: {container.logs(tail=40).decode(errors='replace')}"
        )
