"""The Docker runtime: verified blobs in, probed containers out, never a pull.

Talks to a Docker engine (or Podman's Docker-compatible socket) through the small
standard-library client :mod:`~edgefleet_node.agent.docker_api`, found by
``DOCKER_HOST=unix://…`` or the default socket.

- :meth:`DockerRuntime.prepare` loads the agent's verified blobs into the engine and
  tags the image by its manifest (:mod:`~edgefleet_node.agent.docker_images`, which
  holds the image side: load, platform check, removal of unused images).
- :meth:`DockerRuntime.start` runs a container beside the old one (its create body is
  :func:`~edgefleet_node.agent.docker_spec.container_spec`): host network, a
  free port as ``EDGEFLEET_PORT``, the merged config as environment, read-only root
  filesystem with a ``/tmp`` tmpfs, the image's non-root user (65534 when the image
  says root), all capabilities dropped, ``no-new-privileges``, bounded json-file logs,
  ``--device`` for each declared host device (plus its group when the agent can see
  the node), and the labels of :data:`~edgefleet_node.agent.runtime.LABELS`. It starts
  with restart policy ``no``: a candidate that fails its probe never comes back.
- :meth:`DockerRuntime.probe` waits for ``/healthz`` and runs the probe inference
  (:mod:`~edgefleet_node.agent.docker_probe`, which fails early when the container
  exits), and on success switches the container to ``unless-stopped``, so a device
  reboot brings back the last *good* model.
- :meth:`DockerRuntime.running` rebuilds :class:`Instance` objects from labels after
  an agent restart; :meth:`DockerRuntime.collect` removes stopped containers and
  (through :func:`~edgefleet_node.agent.docker_images.remove_unused`) images whose
  manifest is not kept.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import socket
import threading
from collections.abc import Mapping
from typing import Any

from edgefleet_node.agent import docker_images, docker_probe, promtext, workload_http
from edgefleet_node.agent import log as agent_log
from edgefleet_node.agent.docker_api import DockerAPI, DockerAPIError, NotFoundError
from edgefleet_node.agent.docker_spec import (
    TAG_REPOSITORY,
    container_spec,
    image_tag,
    is_podman,
    start_failure,
)
from edgefleet_node.agent.runtime import (
    LABELS,
    Instance,
    ProbeResult,
    RuntimeFailure,
    VerifiedImage,
)
from edgefleet_node.protocol.desired import Probe, Workload, config_version
from edgefleet_node.protocol.report import WorkloadMetrics

__all__ = ["MANAGED_LABEL", "TAG_REPOSITORY", "DockerRuntime", "image_tag"]

MANAGED_LABEL = "io.edgefleet.managed-by"
_MANAGER = "edgefleet-node"
_ACTIVE = frozenset({"running", "restarting"})
_RESERVED_ENV = frozenset({"EDGEFLEET_PORT"})


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class DockerRuntime:
    """A :class:`~edgefleet_node.agent.runtime.Runtime` backed by a Docker engine."""

    def __init__(
        self,
        client: DockerAPI | None = None,
        *,
        host: str = "127.0.0.1",
        stop_timeout: int = 10,
        tmpfs_size: str = "64m",
        dev_root: str = "/",
        scope: str = "",
    ) -> None:
        """``dev_root``: where the host's ``/dev`` is seen; ``scope``: set when several
        agents share one engine (their containers and image tags are kept apart)."""
        if client is None:
            try:
                client = DockerAPI()
                client.ping()
            except (OSError, ValueError, http.client.HTTPException, DockerAPIError) as exc:
                raise RuntimeFailure(
                    "DockerUnavailable", f"no Docker engine answers (DOCKER_HOST or socket): {exc}"
                ) from exc
        self._docker = client
        self._host = host
        self._stop_timeout = stop_timeout
        self._tmpfs_size = tmpfs_size
        self._dev_root = dev_root
        self._scope = scope
        self._manager = f"{_MANAGER}.{scope}" if scope else _MANAGER
        self._ports_lock = threading.Lock()
        self._podman = is_podman(client.version_info)

    # -- images (docker_images) ---------------------------------------------------------
    def prepare(self, workload: Workload, image: VerifiedImage) -> None:
        # Podman's load reads every layer file, so it gets the whole archive.
        docker_images.load(
            self._docker, workload, image, self._scope, reuse_layers=not self._podman
        )

    # -- containers --------------------------------------------------------------------
    def _device_groups(self, devices: tuple[str, ...]) -> list[str]:
        groups = []
        for path in devices:
            try:
                gid = os.stat(os.path.join(self._dev_root, path.lstrip("/"))).st_gid
            except OSError:
                continue  # not visible to the agent (it runs in a container): the engine checks
            if gid != 0:  # never the root group; a root-only node stays unusable to non-root
                groups.append(str(gid))
        return sorted(set(groups))

    def start(self, workload: Workload, config: Mapping[str, str]) -> Instance:
        image = docker_images.find(self._docker, image_tag(workload.manifest_digest, self._scope))
        if image is None:
            raise RuntimeFailure(
                "ImageMissing", f"{workload.name}: image {workload.manifest_digest} is not loaded"
            )
        with self._ports_lock:
            port = _free_port(self._host)
        env = {k: v for k, v in config.items() if k not in _RESERVED_ENV}
        env["EDGEFLEET_PORT"] = str(port)
        version = config_version(config)
        labels = {
            LABELS["workload"]: workload.name,
            LABELS["manifest_digest"]: workload.manifest_digest,
            LABELS["version"]: workload.version,
            LABELS["config_version"]: version,
            LABELS["port"]: str(port),
            MANAGED_LABEL: self._manager,
        }
        name = f"edgefleet-{workload.name}-{secrets.token_hex(4)}"
        spec = container_spec(
            image,
            env,
            labels,
            workload.host_devices,
            device_groups=self._device_groups(workload.host_devices),
            tmpfs_size=self._tmpfs_size,
            podman=self._podman,
        )
        try:
            container = self._docker.create(name, spec)
        except DockerAPIError as exc:  # Podman checks devices here, Docker at start
            raise start_failure(workload, "create", exc) from exc
        try:
            self._docker.start(container)
        except DockerAPIError as exc:
            self._remove(container)
            raise start_failure(workload, "start", exc) from exc
        agent_log.get().info(
            "container started",
            workload=workload.name,
            container=name,
            port=port,
            manifest=workload.manifest_digest,
            config_version=version,
        )
        return Instance(
            container, workload.name, workload.manifest_digest, workload.version, version, port
        )

    def _remove(self, container: str) -> None:
        with contextlib.suppress(NotFoundError):
            self._docker.remove(container)

    def probe(self, instance: Instance, probe: Probe | None, deadline: float) -> ProbeResult:
        result = docker_probe.probe(self._docker, self._host, instance, probe, deadline)
        if result.healthy:
            self._keep_across_reboots(instance.id)
        return result

    def _keep_across_reboots(self, instance_id: str) -> None:
        if not self._podman:  # Podman 4.3 has no update route
            with contextlib.suppress(NotFoundError):
                policy = {"Name": "unless-stopped", "MaximumRetryCount": 0}
                self._docker.update(instance_id, {"RestartPolicy": policy})

    def stop(self, instance: Instance) -> None:
        try:
            self._docker.stop(instance.id, self._stop_timeout)
        except NotFoundError:
            return
        except (DockerAPIError, OSError, http.client.HTTPException) as exc:
            agent_log.get().warning("container stop failed", container=instance.id, error=str(exc))
        self._remove(instance.id)
        agent_log.get().info("container stopped", workload=instance.workload, container=instance.id)

    def _managed(self) -> list[dict[str, Any]]:
        found = self._docker.containers(LABELS["workload"])
        return [c for c in found if (c.get("Labels") or {}).get(MANAGED_LABEL) == self._manager]

    def running(self) -> list[Instance]:
        instances = []
        for container in self._managed():
            if container.get("State") not in _ACTIVE:
                continue
            labels = container.get("Labels") or {}
            try:
                instances.append(
                    Instance(
                        str(container["Id"]),
                        labels[LABELS["workload"]],
                        labels[LABELS["manifest_digest"]],
                        labels[LABELS["version"]],
                        labels[LABELS["config_version"]],
                        int(labels[LABELS["port"]]),
                    )
                )
            except (KeyError, ValueError):
                agent_log.get().warning("container labels incomplete", container=container["Id"])
        return instances

    def metrics(self, instance: Instance) -> WorkloadMetrics:
        if instance.port is None:
            raise RuntimeFailure("MetricsUnavailable", f"{instance.workload}: no port recorded")
        try:
            answer = workload_http.request(self._host, instance.port, "GET", "/metrics", None, 5.0)
            if answer.status != 200:
                raise RuntimeFailure(
                    "MetricsUnavailable", f"{instance.workload}: /metrics answered {answer.status}"
                )
            return promtext.workload_metrics(answer.body.decode("utf-8", "replace"))
        except (OSError, http.client.HTTPException, promtext.MetricsError) as exc:
            raise RuntimeFailure("MetricsUnavailable", f"{instance.workload}: {exc}") from exc

    def collect(self, keep: set[str]) -> None:
        in_use: set[str] = set()
        for container in self._managed():
            if container.get("State") in docker_probe.GONE:
                self._remove(str(container["Id"]))
            else:
                in_use.add(str(container.get("ImageID", "")))
        docker_images.remove_unused(self._docker, self._scope, keep, in_use)
