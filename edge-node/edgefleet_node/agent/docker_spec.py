"""What the Docker runtime asks of the engine, as plain data: names and specs.

- Image tags: a loaded image is tagged ``edgefleet/workload[-<scope>]:sha256-<hex>``
  after the manifest it came from (:func:`image_tag`, read back by
  :func:`our_manifest`), so garbage collection knows which manifests are kept.
- :func:`container_spec`: the body of ``POST /containers/create`` — host network,
  read-only root filesystem with a bounded ``/tmp`` tmpfs, the image's non-root user
  (65534 when the image says root), all capabilities dropped, ``no-new-privileges``,
  bounded logs and ulimits, and the declared host devices.
- :func:`start_failure`: an engine error at create/start as the agent's failure
  reason (``DeviceMissing`` when a declared host device is absent).

No I/O here: :mod:`~edgefleet_node.agent.docker_runtime` does the talking.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgefleet_node.agent.runtime import RuntimeFailure
from edgefleet_node.protocol.desired import Workload

__all__ = [
    "TAG_REPOSITORY",
    "container_spec",
    "image_tag",
    "is_podman",
    "our_manifest",
    "repository",
    "start_failure",
    "tags",
    "user_for",
]

TAG_REPOSITORY = "edgefleet/workload"
_NOBODY = "65534:65534"
_NOFILE = 4096
_NPROC = 4096  # processes and threads of the container's uid (onnxruntime threads count)


def repository(scope: str) -> str:
    """The local repository an agent of ``scope`` tags its images in."""
    return f"{TAG_REPOSITORY}-{scope}" if scope else TAG_REPOSITORY


def image_tag(manifest_digest: str, scope: str = "") -> str:
    """The local tag that names the manifest an image was loaded from (``scope``: the
    agent's runtime scope, for several agents sharing one engine)."""
    return f"{repository(scope)}:{manifest_digest.replace(':', '-')}"


def our_manifest(tag: str, scope: str = "") -> str | None:
    """The manifest digest a local tag of ours names, or None for anyone else's tag.

    Podman qualifies short names (``localhost/edgefleet/workload:…``); Docker does not.
    """
    name, _, suffix = tag.rpartition(":")
    if name.removeprefix("localhost/") != repository(scope):
        return None
    algorithm, _, hex_digest = suffix.partition("-")
    return f"{algorithm}:{hex_digest}" if algorithm and hex_digest else None


def is_podman(version: Mapping[str, Any]) -> bool:
    """Whether the engine behind the socket is Podman (its compat API lacks
    ``/containers/{id}/update``, so restart policies are set at create)."""
    components = version.get("Components") or []
    return any("podman" in str(c.get("Name", "")).lower() for c in components)


def tags(image: Mapping[str, Any]) -> list[str]:
    """An image's tags (inspect and list both say ``RepoTags``; null when untagged)."""
    return [str(t) for t in image.get("RepoTags") or [] if t != "<none>:<none>"]


def start_failure(workload: Workload, step: str, exc: Exception) -> RuntimeFailure:
    """``DeviceMissing`` when the engine could not find a declared host device."""
    text = str(getattr(exc, "explanation", None) or exc)
    missing = [d for d in workload.host_devices if d in text]
    if missing and ("no such file" in text or "not a device" in text):
        return RuntimeFailure(
            "DeviceMissing",
            f"{workload.name} needs host device {', '.join(missing)}, which this device lacks",
        )
    return RuntimeFailure("StartFailed", f"{workload.name}: cannot {step}: {text}")


def user_for(image: Mapping[str, Any]) -> str:
    """The user a container of ``image`` runs as: the image's, unless that is root."""
    user = str((image.get("Config") or {}).get("User") or "")
    name = user.partition(":")[0]
    return _NOBODY if name in ("", "0", "root") else user


def container_spec(
    image: Mapping[str, Any],
    env: Mapping[str, str],
    labels: Mapping[str, str],
    host_devices: tuple[str, ...],
    *,
    device_groups: list[str],
    tmpfs_size: str,
    podman: bool,
) -> dict[str, Any]:
    """The create body for a workload container of the inspected ``image``."""
    return {
        "Image": image["Id"],
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": dict(labels),
        "User": user_for(image),
        "HostConfig": {
            "NetworkMode": "host",
            "ReadonlyRootfs": True,
            "Tmpfs": {"/tmp": f"rw,noexec,nosuid,size={tmpfs_size}"},  # noqa: S108
            "GroupAdd": device_groups,
            "Devices": [
                {"PathOnHost": d, "PathInContainer": d, "CgroupPermissions": "rwm"}
                for d in host_devices
            ],
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            # Podman 4.3 has no update route: the policy is set at create there, and
            # after a passed probe on Docker (a failing candidate never comes back)
            "RestartPolicy": {"Name": "unless-stopped" if podman else "no"},
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            # explicit and bounded: an engine default above the host's hard limit
            # fails to start (Podman 4.3 on a host without CAP_SYS_RESOURCE)
            "Ulimits": [
                {"Name": "nofile", "Soft": _NOFILE, "Hard": _NOFILE},
                {"Name": "nproc", "Soft": _NPROC, "Hard": _NPROC},
            ],
        },
    }
