"""The Docker runtime against the real engine, with a model image built by our builder.

The image's blobs are fetched from the registry into a content-addressed directory
(the agent's verified store, :mod:`tests.integration.verified_images`) and handed to
the runtime as a ``VerifiedImage``; the
runtime loads them (never pulls), starts, probes, adopts and collects.

The runtime talks to the engine with its own small client (``docker_api``); the tests
look at the world through the ``docker`` SDK, an independent view.

The same tests run against Podman's Docker-compatible API: start ``podman system
service --time=0 unix:///tmp/podman.sock`` and run them with
``DOCKER_HOST=unix:///tmp/podman.sock`` (passed with Podman 4.3.1 from Debian bookworm).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from edgefleet.testing.models import ModelFixture
from edgefleet_node.agent import docker_runtime
from edgefleet_node.agent.docker_runtime import DockerRuntime
from edgefleet_node.agent.runtime import Instance, RuntimeFailure, VerifiedImage
from edgefleet_node.agent.workload_http import request
from edgefleet_node.protocol.desired import Workload
from tests.integration.verified_images import Built, build_model_image, probe_of


@pytest.fixture(scope="module")
def built(
    registry_client, base_index, signing_key, builder_cache, model_files, tmp_path_factory
) -> Built:
    store = tmp_path_factory.mktemp("blobs")
    return build_model_image(
        registry_client, signing_key, builder_cache, model_files, store, seed=41
    )


@pytest.fixture
def runtime(engine, built) -> Iterator[DockerRuntime]:
    client = engine
    rt = DockerRuntime()
    try:
        yield rt
    finally:
        for container in client.containers.list(
            all=True, filters={"label": f"io.edgefleet.workload={built.workload.name}"}
        ):
            container.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):  # Podman: NotFound
            client.images.remove(built.image.config_digest, force=True)


def _deadline(seconds: float = 120) -> float:
    return time.monotonic() + seconds


def _predict(instance: Instance, fixture: ModelFixture):
    body = json.dumps(fixture.probe_request()).encode()
    assert instance.port is not None
    answer = request("127.0.0.1", instance.port, "POST", "/v1/predict", body, 30)
    return answer.status, json.loads(answer.body)


def test_load_start_probe_serve_and_report_metrics(runtime, built, engine):
    runtime.prepare(built.workload, built.image)
    loaded = engine.images.get(built.image.config_digest)
    assert loaded.id == built.image.config_digest
    tag = docker_runtime.image_tag(built.workload.manifest_digest)
    assert {t.removeprefix("localhost/") for t in loaded.tags} >= {tag}  # podman qualifies
    runtime.prepare(built.workload, built.image)  # already there: nothing to do

    instance = runtime.start(built.workload, {"GREETING": "hello"})
    result = runtime.probe(instance, built.workload.probe, _deadline())
    assert result.healthy, result
    status, answer = _predict(instance, built.fixture)
    assert status == 200
    assert built.fixture.matches(answer["outputs"]), answer

    attrs = engine.containers.get(instance.id).attrs
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "host"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] or {"CHOWN", "NET_RAW", "SETUID"} <= set(host["CapDrop"])
    assert host["RestartPolicy"]["Name"] == "unless-stopped", "a probed workload survives reboots"
    assert attrs["Config"]["User"] not in ("", "0", "root")
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    assert env["GREETING"] == "hello"
    assert env["EDGEFLEET_PORT"] == str(instance.port)

    metrics = runtime.metrics(instance)
    assert metrics.requests >= 2  # the probe and our request
    assert metrics.errors == 0
    assert metrics.p95_latency_ms is not None
    assert metrics.p95_latency_ms > 0


def test_wrong_expected_answer_fails_the_probe_and_is_not_kept(runtime, built, engine):
    runtime.prepare(built.workload, built.image)
    instance = runtime.start(built.workload, {})
    result = runtime.probe(instance, probe_of(built.fixture, wrong=True), _deadline())
    assert not result.healthy
    assert result.reason == "ProbeFailed"
    assert "differs from the expected answer" in result.message
    attrs = engine.containers.get(instance.id).attrs
    if not runtime._podman:  # Podman cannot change it later, so it starts unless-stopped
        assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
    runtime.stop(instance)
    assert runtime.running() == []
    runtime.stop(instance)  # stopping a gone instance is fine


def test_a_container_that_exits_fails_the_probe_early(runtime, built):
    runtime.prepare(built.workload, built.image)
    instance = runtime.start(built.workload, {"EDGEFLEET_THREADS": "not-a-number"})
    started = time.monotonic()
    result = runtime.probe(instance, built.workload.probe, _deadline(120))
    assert not result.healthy
    assert result.reason == "Exited"
    assert "EDGEFLEET_THREADS" in result.message, "the last log lines say why"
    if not runtime._podman:  # Podman restarts it (unless-stopped): the code is gone
        assert "exited with code 2" in result.message
    assert time.monotonic() - started < 60, "failed early, not at the deadline"


def test_a_new_agent_adopts_what_runs_and_collect_keeps_only_what_it_is_told(
    runtime, built, engine
):
    runtime.prepare(built.workload, built.image)
    old = runtime.start(built.workload, {"A": "1"})
    assert runtime.probe(old, built.workload.probe, _deadline()).healthy
    new = runtime.start(built.workload, {"A": "2"})  # beside the old one, another port
    assert new.port != old.port
    assert runtime.probe(new, built.workload.probe, _deadline()).healthy

    adopted = DockerRuntime().running()  # a new agent
    assert sorted(adopted, key=lambda i: i.id) == sorted([old, new], key=lambda i: i.id)
    assert old.config_version != new.config_version

    runtime.collect({built.workload.manifest_digest})
    assert engine.images.get(built.image.config_digest)  # kept: in use and listed
    runtime.stop(old)
    runtime.stop(new)
    runtime.collect(set())
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(built.image.config_digest)
    with pytest.raises(RuntimeFailure) as err:
        runtime.start(built.workload, {})
    assert err.value.reason == "ImageMissing"


def test_a_missing_host_device_is_a_clear_failure(runtime, built):
    runtime.prepare(built.workload, built.image)
    workload = Workload(
        **{**built.workload.__dict__, "host_devices": ("/dev/edgefleet-no-such-camera0",)}
    )
    with pytest.raises(RuntimeFailure) as err:
        runtime.start(workload, {})
    assert err.value.reason == "DeviceMissing"
    assert "/dev/edgefleet-no-such-camera0" in str(err.value)
    assert runtime.running() == []


@pytest.mark.skipif(not Path("/dev/net/tun").exists(), reason="no /dev/net/tun on this host")
def test_a_declared_host_device_is_mapped_into_the_workload(runtime, built, engine):
    runtime.prepare(built.workload, built.image)
    workload = Workload(**{**built.workload.__dict__, "host_devices": ("/dev/net/tun",)})
    instance = runtime.start(workload, {})
    assert runtime.probe(instance, workload.probe, _deadline()).healthy
    container = engine.containers.get(instance.id)
    devices = container.attrs["HostConfig"]["Devices"]
    assert [d["PathOnHost"] for d in devices] == ["/dev/net/tun"]
    assert container.exec_run(["test", "-c", "/dev/net/tun"]).exit_code == 0
    groups = container.attrs["HostConfig"].get("GroupAdd") or []
    assert "0" not in groups, "a root-owned device never grants the root group"


@pytest.fixture
def camera() -> Iterator[str]:
    """A character device owned by root:video 0660 (the null device's numbers), like a
    camera on Raspberry Pi OS; removed afterwards."""
    path = f"/dev/edgefleet-test-video{uuid.uuid4().hex[:6]}"
    try:
        os.mknod(path, 0o660 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root with CAP_MKNOD")
    try:
        os.chown(path, 0, 44)  # group "video" on Debian
        os.chmod(path, 0o660)  # mknod applied the umask
        yield path
    finally:
        os.unlink(path)


def test_the_workload_user_may_open_a_group_accessible_device(runtime, built, camera, engine):
    runtime.prepare(built.workload, built.image)
    workload = Workload(**{**built.workload.__dict__, "host_devices": (camera,)})
    instance = runtime.start(workload, {})
    assert runtime.probe(instance, workload.probe, _deadline()).healthy
    container = engine.containers.get(instance.id)
    assert container.attrs["HostConfig"]["GroupAdd"] == ["44"]
    listing = container.exec_run(["ls", "-ln", camera]).output.decode()
    wrote = container.exec_run(["sh", "-c", f"id -u && echo frame > {camera}"])
    assert wrote.exit_code == 0, (wrote.output, listing)
    assert wrote.output.decode().split()[0] != "0", "as the image's non-root user"


@pytest.fixture(scope="module")
def second(
    registry_client, base_index, signing_key, builder_cache, model_files, tmp_path_factory
) -> Built:
    """Another model on the same base and runtime: only the model's layers differ."""
    store = tmp_path_factory.mktemp("blobs2")
    return build_model_image(
        registry_client, signing_key, builder_cache, model_files, store, seed=43
    )


def _damaged(image: VerifiedImage, indexes: list[int], directory: Path) -> VerifiedImage:
    """``image`` with the files of the given layers replaced by other bytes."""
    paths = list(image.layer_paths)
    for i in indexes:
        paths[i] = directory / f"damaged-{i}"
        paths[i].write_bytes(b"not the layer")
    return dataclasses.replace(image, layer_paths=tuple(paths))


def test_a_new_version_is_loaded_without_the_layers_the_engine_has(
    runtime, built, second, engine, tmp_path
):
    shared = [i for i, d in enumerate(second.image.layer_digests) if d in built.image.layer_digests]
    assert shared, "the two builds share their base"
    assert shared == list(range(len(shared))), "a common base, then the model"
    assert len(shared) < len(second.image.layer_digests)
    runtime.prepare(built.workload, built.image)
    # The shared layers' files are damaged: had they been sent, the archive's re-hash
    # would have ended the stream; the engine takes them from the first image instead.
    damaged = _damaged(second.image, shared, tmp_path)
    try:
        runtime.prepare(second.workload, damaged)
        assert engine.images.get(second.image.config_digest).id == second.image.config_digest
        instance = runtime.start(second.workload, {})
        assert runtime.probe(instance, second.workload.probe, _deadline()).healthy
        status, answer = _predict(instance, second.fixture)
        assert status == 200, answer
        runtime.stop(instance)
        # Control: an agent whose images hold none of those layers (its own scope) must
        # send them, and the damage is caught before the engine has the image.
        other = DockerRuntime(scope=f"ctl{uuid.uuid4().hex[:6]}")
        engine.images.remove(second.image.config_digest, force=True)
        with pytest.raises(RuntimeFailure) as failure:
            other.prepare(second.workload, damaged)
        assert failure.value.reason == "LoadFailed", failure.value
        with pytest.raises(docker.errors.ImageNotFound):
            engine.images.get(second.image.config_digest)
    finally:
        for container in engine.containers.list(
            all=True, filters={"label": f"io.edgefleet.workload={second.workload.name}"}
        ):
            container.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            engine.images.remove(second.image.config_digest, force=True)
