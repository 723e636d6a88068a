"""The Docker runtime's create body and image tags, as plain data."""

from __future__ import annotations

import pytest

from edgefleet_node.agent import docker_spec
from edgefleet_node.agent.docker_api import DockerAPIError
from edgefleet_node.protocol.desired import Workload

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", "65534:65534"),
        ("root", "65534:65534"),
        ("0:0", "65534:65534"),
        ("1000:1000", "1000:1000"),
    ],
)
def test_a_container_never_runs_as_root(user, expected):
    assert docker_spec.user_for({"Config": {"User": user}}) == expected


@pytest.mark.parametrize(("podman", "policy"), [(False, "no"), (True, "unless-stopped")])
def test_create_body_is_locked_down_and_maps_declared_devices(podman, policy):
    spec = docker_spec.container_spec(
        {"Id": "sha256:cfg", "Config": {"User": "root"}},
        {"EDGEFLEET_PORT": "8080", "THRESHOLD": "0.5"},
        {"io.edgefleet.workload": "detector"},
        ("/dev/video0",),
        device_groups=["44"],
        tmpfs_size="64m",
        podman=podman,
    )
    host = spec["HostConfig"]
    assert spec["Image"] == "sha256:cfg"
    assert spec["User"] == "65534:65534"
    assert sorted(spec["Env"]) == ["EDGEFLEET_PORT=8080", "THRESHOLD=0.5"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["NetworkMode"] == "host"
    assert host["Devices"] == [
        {"PathOnHost": "/dev/video0", "PathInContainer": "/dev/video0", "CgroupPermissions": "rwm"}
    ]
    assert host["GroupAdd"] == ["44"]
    assert host["RestartPolicy"]["Name"] == policy


@pytest.mark.parametrize("scope", ["", "agent-2"])
def test_image_tags_name_their_manifest_and_ignore_other_tags(scope):
    tag = docker_spec.image_tag(DIGEST, scope)
    assert docker_spec.our_manifest(tag, scope) == DIGEST
    assert docker_spec.our_manifest(f"localhost/{tag}", scope) == DIGEST  # Podman's spelling
    assert docker_spec.our_manifest("debian:bookworm", scope) is None
    assert docker_spec.our_manifest(tag, "another-scope") is None


def _workload(devices: tuple[str, ...]) -> Workload:
    return Workload(
        name="detector",
        version="1.0.0",
        repository="edgefleet/models/default/detector",
        index_digest=DIGEST,
        manifest_digest=DIGEST,
        platform="linux/amd64",
        host_devices=devices,
    )


def test_an_absent_host_device_is_reported_as_missing_not_as_a_start_failure():
    workload = _workload(("/dev/video0",))
    missing = DockerAPIError(500, "error gathering device information while adding custom "
                             'device "/dev/video0": no such file or directory')  # fmt: skip
    assert docker_spec.start_failure(workload, "start", missing).reason == "DeviceMissing"
    other = DockerAPIError(500, "port is already allocated")
    assert docker_spec.start_failure(workload, "start", other).reason == "StartFailed"
