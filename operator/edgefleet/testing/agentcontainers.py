"""Real agents in containers against ``edgefleet gateway``, for the demo and e2e tests.

- :class:`GatewayProcess`: ``edgefleet gateway`` as its own process (restartable); it
  is up when its ``/edgefleet/v1/ca`` answers over TLS with the CA from its Secret.
- :func:`trusted_registry`: the local TLS registry's CA in ``/etc/docker/certs.d`` so
  the engine pulls the agent image from it (removed afterwards).
- :func:`build_agent_image`: the agent's image per platform, by manifest digest (Docker
  20.10 keeps one local image per index reference).
- :class:`DeviceContainer` / :func:`start_device`: one device — a token from
  ``edgefleet token create``, ``edgefleet-node enroll`` in a container, then
  ``edgefleet-node run`` with the Docker socket, a named volume as its state dir and
  host networking. Several devices share this machine's engine, so each agent gets a
  runtime scope (its own containers and image tags); :meth:`DeviceContainer.remove`
  removes the agent, its workloads, its images and its volume.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edgefleet.domain import nodeimage
from edgefleet.testing.procs import Service, wait_until

__all__ = [
    "GATEWAY_NS",
    "DeviceContainer",
    "GatewayProcess",
    "build_agent_image",
    "create_token",
    "gateway_env",
    "remove_model_images",
    "start_device",
    "trusted_registry",
]

GATEWAY_NS = "edgefleet-system"
WORKLOAD_LABEL = "io.edgefleet.workload"
MANAGED_LABEL = "io.edgefleet.managed-by"


def gateway_env(kubeconfig: Path, registry: Any, port: int, replica: str) -> dict[str, str]:
    """The environment of ``edgefleet gateway`` / ``edgefleet token`` on loopback."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")},
        "KUBECONFIG": str(kubeconfig),
        "EDGEFLEET_NAMESPACE": GATEWAY_NS,
        "EDGEFLEET_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "EDGEFLEET_GATEWAY_NAMES": "127.0.0.1,localhost",
        "EDGEFLEET_GATEWAY_REPLICA": replica,
        "EDGEFLEET_REGISTRY_URL": registry.url,
        "EDGEFLEET_REGISTRY_CA": str(registry.ca_path),
    }


class GatewayProcess:
    """``edgefleet gateway`` in a child process; restartable, always stopped."""

    def __init__(self, env: dict[str, str], log_dir: Path, port: int) -> None:
        self.env, self.log_dir, self.port = env, log_dir, port
        self.service: Service | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"gateway-{self.starts}.log"

    def start(self, cp: Any, timeout: float = 90) -> None:
        self.starts += 1
        self.service = Service(
            "gateway",
            [sys.executable, "-m", "edgefleet.cli", "--json-logs", "gateway"],
            self.log_path,
            env=self.env,
        )
        ca = self.log_dir / "gateway-ca.pem"

        def answers() -> bool:
            got = cp.kubectl("get", "secret", "edgefleet-gateway-ca", "-n", GATEWAY_NS,
                             "-o", "jsonpath={.data.tls\\.crt}", check=False)  # fmt: skip
            if got.returncode != 0 or not got.stdout:
                return False
            ca.write_bytes(base64.b64decode(got.stdout))
            try:
                context = ssl.create_default_context(cafile=str(ca))
                return httpx.get(
                    f"{self.url}/edgefleet/v1/ca", verify=context, timeout=2
                ).is_success
            except (httpx.HTTPError, ssl.SSLError):
                return False

        try:
            wait_until(answers, timeout=timeout, what="gateway /ca", alive=self.service.check_alive)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    def metric(self, sample: str, labels: dict[str, str] | None = None) -> float:
        """One sample of the running gateway's ``/metrics`` (0 when it has none yet)."""
        from prometheus_client.parser import text_string_to_metric_families

        context = ssl.create_default_context(cafile=str(self.log_dir / "gateway-ca.pem"))
        text = httpx.get(f"{self.url}/metrics", verify=context, timeout=10).raise_for_status()
        for family in text_string_to_metric_families(text.text):
            for found in family.samples:
                if found.name == sample and found.labels == (labels or {}):
                    return float(found.value)
        return 0.0


@contextlib.contextmanager
def trusted_registry(registry: Any) -> Iterator[None]:
    """The registry's CA in the engine's ``certs.d`` for as long as the block runs."""
    certs = Path("/etc/docker/certs.d") / registry.host
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "ca.crt").write_bytes(Path(registry.ca_path).read_bytes())
    try:
        yield
    finally:
        shutil.rmtree(certs, ignore_errors=True)


def build_agent_image(
    registry_client: Any,
    signing_key: Any,
    cache_dir: Path,
    platforms: Sequence[str],
    tag: str,
    progress: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """The agent image reference per platform, by manifest digest."""
    from edgefleet.clients import appbuilder, edgefleetimages

    builder = appbuilder.AppImageBuilder(registry_client, signing_key, cache_dir)
    result = edgefleetimages.build_node_image(
        builder, "edgefleet/node", platforms, tags=[tag], progress=progress
    )
    return {i.platform: f"{result.repository}@{i.digest}" for i in result.images}


def create_token(env: dict[str, str], namespace: str, device: str) -> str:
    """A bootstrap token from ``edgefleet token create`` (the CLI users run)."""
    done = subprocess.run(
        [sys.executable, "-m", "edgefleet.cli", "token", "create", "--namespace", namespace,
         device, "--gateway-namespace", GATEWAY_NS],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"edgefleet token create {namespace}/{device}: {done.stderr}")
    return done.stdout.strip()


@dataclass
class DeviceContainer:
    """One device: its agent container, state volume and runtime scope."""

    client: Any
    name: str
    platform: str
    scope: str
    volume: Any
    image: str
    agent: Any = None
    pulled: list[str] = field(default_factory=list)

    def alive(self) -> None:
        """Raise with the agent's last log lines if its container stopped."""
        if self.agent is None:
            return
        self.agent.reload()
        if self.agent.status != "running":
            tail = self.agent.logs(tail=40).decode(errors="replace")
            raise AssertionError(f"the agent of {self.name} stopped: {tail}")

    def workloads(self) -> list[Any]:
        """This device's running workload containers."""
        return [
            c
            for c in self.client.containers.list(filters={"label": WORKLOAD_LABEL})
            if (c.labels or {}).get(MANAGED_LABEL) == f"edgefleet-node.{self.scope}"
        ]

    def workload_port(self, model: str) -> int | None:
        for container in self.workloads():
            if container.labels.get(WORKLOAD_LABEL) == model:
                return int(container.labels["io.edgefleet.port"])
        return None

    def logs(self, tail: int = 60) -> str:
        return "" if self.agent is None else self.agent.logs(tail=tail).decode(errors="replace")

    def remove(self) -> None:
        """The agent, its workloads, their images and the state volume (best effort,
        each step on its own so one failure does not leave the rest behind)."""
        import docker

        errors = docker.errors
        managed = f"edgefleet-node.{self.scope}"
        for container in self.client.containers.list(
            all=True, filters={"label": f"{MANAGED_LABEL}={managed}"}
        ):
            with contextlib.suppress(errors.APIError):
                container.remove(force=True)
        if self.agent is not None:
            with contextlib.suppress(errors.APIError):
                self.agent.remove(force=True)
        for image in self.client.images.list(name=f"edgefleet/workload-{self.scope}"):
            for tag in image.tags or []:
                with contextlib.suppress(errors.APIError):
                    self.client.images.remove(tag, force=True)
        with contextlib.suppress(errors.APIError):
            self.volume.remove(force=True)


def remove_model_images(client: Any, namespace: str) -> None:
    """Workload images of ``namespace``'s models that no container uses any more, tagged
    or not (an image two devices shared can end up untagged before its last user goes)."""
    import docker

    label = f"io.edgefleet.model.namespace={namespace}"
    for image in client.images.list(all=True, filters={"label": label}):
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image.id, force=False)


def start_device(
    client: Any,
    image_ref: str,
    platform: str,
    gateway: GatewayProcess,
    namespace: str,
    name: str,
    scope: str,
    slow: float = 1.0,
) -> DeviceContainer:
    """Enrol device ``namespace/name`` in a container and start its agent.

    On failure the half-made device is removed before the error propagates.
    """
    volume = client.volumes.create(f"edgefleet-{scope}")
    device = DeviceContainer(client, name, platform, scope, volume, image_ref)
    try:
        client.images.pull(image_ref, platform=platform)
        pulled = client.images.get(image_ref)
        if pulled.attrs["Architecture"] != platform.split("/")[1]:
            raise RuntimeError(f"{image_ref} is {pulled.attrs['Architecture']}, not {platform}")
        common: dict[str, Any] = {
            "image": pulled.id,
            "network_mode": "host",
            "user": f"{nodeimage.AGENT_UID}:{nodeimage.AGENT_UID}",
            "group_add": [str(os.stat("/var/run/docker.sock").st_gid)],
            "read_only": True,
            "tmpfs": {"/tmp": "rw,noexec,nosuid,size=16m"},  # noqa: S108
            "environment": {"EDGEFLEET_NODE_RUNTIME_SCOPE": scope},
            "labels": {"io.edgefleet.demo-device": name},
            "volumes": {
                volume.name: {"bind": f"/{nodeimage.STATE_DIR}", "mode": "rw"},
                "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
            },
        }
        token = create_token(gateway.env, namespace, name)
        enrol = client.containers.run(
            command=["enroll", "--gateway", gateway.url, "--token", token],
            detach=True, name=f"edgefleet-enroll-{scope}", **common,
        )  # fmt: skip
        try:
            result = enrol.wait(timeout=int(300 * slow))
            if result["StatusCode"] != 0:
                raise RuntimeError(f"enrolling {name} failed: {enrol.logs().decode()}")
        finally:
            enrol.remove(force=True)
        device.agent = client.containers.run(
            command=["run"], detach=True, name=f"edgefleet-agent-{scope}", **common
        )
        return device
    except BaseException:
        device.remove()
        raise
