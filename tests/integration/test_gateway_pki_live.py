"""The PKI and the /v2/ proxy inside the real gateway (``edgefleet.gateway.server``,
real API server, TLS registry): a simulated device keeps working across a device-CA,
gateway-CA (serving certificate) and document-key rotation made with `edgefleet pki
rotate` while the gateway reloads its PKI; and the real Docker engine pulls a device's
own image through the gateway with the device's enrolled certificate, and is refused
another device's."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import shutil
import ssl
import subprocess
import sys
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config

from edgefleet.clients import pki as gateway_pki
from edgefleet.clients import tokens
from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.domain import pki, signing
from edgefleet.testing.engine import EngineError
from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
from edgefleet.testing.procs import free_port, wait_until
from edgefleet.testing.simdevice import SimDevice
from edgefleet.testing.tinyimage import push_image
from edgefleet_node.protocol import desired, dsse, enroll

T = TypeVar("T")
EDGEFLEET = str(Path(sys.executable).parent / "edgefleet")


@pytest.fixture
def spaces(crds) -> Iterator[tuple[str, str, client.ApiClient]]:
    """(gateway namespace with the operator's image key, device namespace, API client)."""
    run = uuid.uuid4().hex[:8]
    gw_ns, dev_ns = f"gw-{run}", f"dev-{run}"
    for name in (gw_ns, dev_ns):
        crds.kubectl("create", "namespace", name)
    api = config.new_client_from_config(config_file=str(crds.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        ensure_signing_key(client.CoreV1Api(api), gw_ns, "edgefleet-signing-key")
        yield gw_ns, dev_ns, api
    finally:
        api.close()
        for name in (gw_ns, dev_ns):
            crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _device(crds, namespace: str, name: str, desired_image=None) -> None:
    body = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"platform": "linux/amd64"},
    }
    crds.kubectl("apply", "--server-side", "-f", "-", input_text=json.dumps(body))
    if desired_image is not None:
        workload = {
            "model": "cam",
            "version": "1",
            "repository": desired_image.repository,
            "indexDigest": desired_image.index_digest,
            "imageDigest": desired_image.manifests["linux/amd64"],
        }
        status = {**body, "status": {"desired": [workload], "desiredRevision": 1}}
        del status["spec"]
        crds.kubectl(
            "apply", "--server-side", "--subresource=status",
            "--field-manager=edgefleet-rollouts", "-f", "-", input_text=json.dumps(status),
        )  # fmt: skip


def _enrolled(api, gw_ns: str, dev_ns: str, name: str, host: str, port: int) -> SimDevice:
    token = tokens.create_token(
        api,
        gateway_namespace=gw_ns,
        namespace=dev_ns,
        device=name,
        ca_hash=gateway_pki.gateway_pin(api, gw_ns),
    )
    sim = SimDevice(host, port, dev_ns, name, "linux/amd64")
    result = _run(sim.enroll(str(token)))
    assert result.status == 200, result.body
    return sim


_LOOP: list[asyncio.AbstractEventLoop] = []


@pytest.fixture(autouse=True)
def _loop() -> Iterator[None]:
    """One event loop per test: the simulated device keeps its connection on it."""
    _LOOP.append(asyncio.new_event_loop())
    try:
        yield
    finally:
        loop = _LOOP.pop()
        for _ in range(5):  # let closed transports finish closing (connection_lost)
            loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return _LOOP[-1].run_until_complete(coro)


class Trust:
    """What the agent keeps from trust bundles: it adopts a newer one signed by a
    document key it already trusts, and from then on verifies the gateway with its CAs."""

    def __init__(self, sim: SimDevice) -> None:
        self.sim = sim
        self.serial = 0
        self.image_keys: tuple[bytes, ...] = ()

    def poll(self) -> None:
        try:
            result = _run(self.sim.poll(have=None, wait=1))
        except ConnectionResetError:  # a keep-alive connection the gateway closed as idle
            self.sim._conn = None  # (request() closed it): retry once on a new one
            result = _run(self.sim.poll(have=None, wait=1))
        assert result.status == 200, result.body
        poll = desired.PollResponse.from_bytes(result.body)
        trusted = dsse.TrustedKeys.from_pems(self.sim.signing_keys)
        bundle = desired.accept_trust(poll.trust, trusted, self.serial)
        if bundle is not None:
            self.serial = bundle.serial
            self.sim.signing_keys = bundle.signing_keys
            self.image_keys = bundle.image_keys
            if enroll.bundle(bundle.gateway_cas) != self.sim.gateway_ca:
                self.sim.gateway_ca = enroll.bundle(bundle.gateway_cas)
                self.sim.close()
                self.sim._conn = None


def _rotate(crds, gw_ns: str, target: str, *extra: str) -> None:
    argv = [EDGEFLEET, "pki", "rotate", target, *extra, "--force", "--gateway-namespace", gw_ns,
            "--kubeconfig", str(crds.kubeconfig)]  # fmt: skip
    if "--finish" not in extra:
        argv.remove("--force")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _serial(gw: GatewayReplica) -> int:
    assert gw.gateway is not None
    routes = gw.gateway.routes
    return int(gw.call(lambda: routes.pki.trust_serial))


def test_device_keeps_working_across_rotations_in_the_real_gateway(crds, spaces):
    gw_ns, dev_ns, api = spaces
    _device(crds, dev_ns, "cam-1")
    cfg = dataclasses.replace(loopback_config(gw_ns, "gw-rot"), pki_reload=0.5)
    with GatewayReplica(cfg, crds.kubeconfig) as gw:
        sim = _enrolled(api, gw_ns, dev_ns, "cam-1", "127.0.0.1", gw.port)
        trust = Trust(sim)
        trust.poll()
        serial = _serial(gw)
        assert trust.serial == serial

        def step(target: str, *extra: str) -> None:
            nonlocal serial
            _rotate(crds, gw_ns, target, *extra)
            wait_until(lambda: _serial(gw) > serial, timeout=20, what="the gateway reloads")
            serial = _serial(gw)
            trust.poll()
            assert trust.serial == serial

        try:
            step("device-ca")
            old = SimDevice("127.0.0.1", gw.port, dev_ns, "cam-1", "linux/amd64")
            old.__dict__.update({k: v for k, v in sim.__dict__.items() if k != "_conn"})
            old._conn = None
            assert _run(sim.renew()).status == 200  # from the new device CA
            trust.poll()
            step("device-ca", "--finish")
            try:  # the certificate of the dropped CA: a failed handshake or a 401
                refused: object = _run(old.poll(have=None, wait=1)).status
            except (ssl.SSLError, ConnectionError) as exc:
                refused = type(exc).__name__
            finally:
                old.close()
            assert refused != 200

            step("gateway-ca")  # the device learns the new CA ...
            laggard_ca = sim.gateway_ca
            step("gateway-ca", "--finish")  # ... before the serving certificate moves
            assert sim.gateway_ca != laggard_ca

            step("document-key")
            assert len(tuple(sim.signing_keys)) == 2
            step("document-key", "--finish")
            assert len(tuple(sim.signing_keys)) == 1
            assert sim.held is not None
        finally:
            sim.close()


def test_a_new_image_signing_key_reaches_devices(crds, spaces):
    """The operator's image key replaced (a new Secret, the operator restarted): the
    published public key's rotation step grows, so the trust-bundle serial does and the
    device adopts the new key. An operator restart with the same key changes nothing."""
    gw_ns, dev_ns, api = spaces
    core = client.CoreV1Api(api)
    _device(crds, dev_ns, "cam-k")
    cfg = dataclasses.replace(loopback_config(gw_ns, "gw-imgkey"), pki_reload=0.5)
    with GatewayReplica(cfg, crds.kubeconfig) as gw:
        sim = _enrolled(api, gw_ns, dev_ns, "cam-k", "127.0.0.1", gw.port)
        try:
            trust = Trust(sim)
            trust.poll()
            serial = _serial(gw)
            old_pub = signing.public_key_pem(
                ensure_signing_key(core, gw_ns, "edgefleet-signing-key")  # a restart: no change
            )
            assert trust.image_keys == (old_pub,)
            core.delete_namespaced_secret("edgefleet-signing-key", gw_ns)
            new = signing.generate_key()
            core.create_namespaced_secret(gw_ns, client.V1Secret(
                metadata=client.V1ObjectMeta(name="edgefleet-signing-key"),
                data={"cosign.key": base64.b64encode(signing.private_key_pem(new)).decode()},
            ))  # fmt: skip
            ensure_signing_key(core, gw_ns, "edgefleet-signing-key")  # the operator starts
            wait_until(lambda: _serial(gw) > serial, timeout=20, what="the gateway reloads")
            trust.poll()
            assert trust.serial == _serial(gw)
            assert trust.image_keys == (signing.public_key_pem(new),)
            assert _serial(gw) == serial + 1
        finally:
            sim.close()


def _host_address() -> str | None:
    done = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[1] != "lo":
            return fields[3].split("/")[0]
    return None


def test_docker_pulls_its_own_image_through_the_real_gateway(
    crds, spaces, registry, registry_client, docker_engine
):
    if not os.access("/etc", os.W_OK):
        pytest.skip("writing /etc/docker/certs.d needs root")
    address = _host_address()
    if address is None:
        pytest.skip("no non-loopback address (Docker ignores certs.d for 127.0.0.0/8)")
    gw_ns, dev_ns, api = spaces
    key = signing.generate_key()
    mine = push_image(registry_client, f"edgefleet/models/{dev_ns}/cam-a", key, text="A")
    theirs = push_image(registry_client, f"edgefleet/models/{dev_ns}/cam-b", key, text="B")
    _device(crds, dev_ns, "cam-a", mine)
    _device(crds, dev_ns, "cam-b", theirs)
    cfg = dataclasses.replace(
        loopback_config(gw_ns, "gw-docker"),
        host=address,
        port=free_port(),
        names=(address,),
        registry_url=registry.url,
        registry_ca=str(registry.ca_path),
    )
    with GatewayReplica(cfg, crds.kubeconfig) as gw:
        sim = _enrolled(api, gw_ns, dev_ns, "cam-a", address, gw.port)
        sim.close()
        certs_d = Path("/etc/docker/certs.d") / f"{address}:{gw.port}"
        certs_d.mkdir(parents=True, exist_ok=True)
        own = f"{address}:{gw.port}/{mine.repository}@{mine.index_digest}"
        try:
            assert sim.gateway_ca is not None
            assert sim.cert_pem is not None
            (certs_d / "ca.crt").write_bytes(sim.gateway_ca)
            (certs_d / "client.cert").write_bytes(sim.cert_pem)
            (certs_d / "client.key").write_bytes(pki.key_pem(sim.key))
            docker_engine.docker("pull", own, timeout=120)
            got = docker_engine.docker("image", "inspect", "--format", "{{.Id}}", own).stdout
            assert got.decode().strip() == mine.blobs["linux/amd64"][0]
            other = f"{address}:{gw.port}/{theirs.repository}@{theirs.index_digest}"
            with pytest.raises(EngineError, match="manifest unknown"):
                docker_engine.docker("pull", other, timeout=120)
        finally:
            shutil.rmtree(certs_d, ignore_errors=True)
            docker_engine.remove_image(mine.blobs["linux/amd64"][0])
            docker_engine.remove_image(theirs.blobs["linux/amd64"][0])
