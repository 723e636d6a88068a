"""The agent against the real gateway, API server and TLS registry (simulated runtime:
the Docker runtime has its own tests): enrol with a token, pull a signed image through
the gateway's /v2/, report Ready with the digest on the EdgeDevice; the gateway killed
(SIGKILL) mid-download and the download resumed; the gateway gone for a while and
every report delivered after reconnect, none lost or twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.testing.gatewayrun import GatewayReplica, loopback_config
from edgefleet.testing.procs import free_port, wait_until
from edgefleet.testing.tinyimage import PushedImage, push_image
from edgefleet_node.agent import activate, cli, store
from edgefleet_node.agent import config as agent_config
from edgefleet_node.agent.loop import Agent, LoopSettings
from edgefleet_node.agent.simulated import SimulatedRuntime
from edgefleet_node.protocol import enroll
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
def signing_key(crds, gateway_namespace):
    api = config.new_client_from_config(config_file=str(crds.kubeconfig))  # type: ignore[no-untyped-call]
    return ensure_signing_key(client.CoreV1Api(api), GW_NS, "edgefleet-signing-key")


def _gateway_config(registry, port: int) -> Any:
    import dataclasses

    return dataclasses.replace(
        loopback_config(GW_NS, "gw-agent"),
        port=port,
        registry_url=registry.url,
        registry_ca=str(registry.ca_path),
    )


@pytest.fixture
def gateway(crds, gateway_namespace, registry) -> Iterator[GatewayReplica]:
    cfg = _gateway_config(registry, free_port())
    with GatewayReplica(cfg, crds.kubeconfig) as gw:
        yield gw


@pytest.fixture
def fleet(crds, gateway) -> Iterator[Fleet]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    crds.kubectl("create", "namespace", name)
    made = Fleet(crds, name, gateway)
    try:
        yield made
    finally:
        made.close()
        crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _set_desired(
    fleet: Fleet, device: str, revision: int, image: PushedImage, model: str, version: str
) -> None:
    body = {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": device, "namespace": fleet.namespace},
        "status": {
            "desiredRevision": revision,
            "desired": [
                {
                    "model": model,
                    "version": version,
                    "repository": image.repository,
                    "indexDigest": image.index_digest,
                    "imageDigest": image.manifests[PLATFORM],
                    "config": {"THRESHOLD": "0.5"},
                }
            ],
        },
    }
    fleet.cp.kubectl(
        "apply",
        "--server-side",
        "--subresource=status",
        "--field-manager=edgefleet-rollouts",
        "-f",
        "-",
        input_text=json.dumps(body),
    )


class _Running:
    def __init__(self, state: store.StateDir, runtime: SimulatedRuntime) -> None:
        self.agent = Agent(state, runtime, SETTINGS)
        self.thread = threading.Thread(target=self.agent.run, daemon=True)

    def __enter__(self) -> Agent:
        self.thread.start()
        return self.agent

    def __exit__(self, *exc: object) -> None:
        self.agent.stop()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()


def _enrol(fleet: Fleet, device: str, url: str, root: Path) -> store.StateDir:
    fleet.device(device, PLATFORM)
    conf = agent_config.Config(state_dir=root, platform=PLATFORM)
    cli.enroll_device(conf, url, enroll.BootstrapToken.parse(fleet.token(device)))
    return store.StateDir(root)


def _current(fleet: Fleet, device: str) -> list[dict[str, Any]]:
    return (fleet.get(device).get("status") or {}).get("current") or []


def test_enrol_pull_through_the_gateway_and_report_ready(
    fleet, gateway, registry_client, signing_key, tmp_path
) -> None:
    image = push_image(
        registry_client,
        f"edgefleet/models/{fleet.namespace}/cam",
        signing_key,
        platforms=(PLATFORM,),
    )
    state = _enrol(fleet, "dev-1", f"https://127.0.0.1:{gateway.port}", tmp_path / "s")
    fleet.wait_condition("dev-1", "Enrolled", "True")
    _set_desired(fleet, "dev-1", 1, image, "cam", "1.0.0")
    rt = SimulatedRuntime()
    with _Running(state, rt):
        fleet.wait_condition("dev-1", "Ready", "True", timeout=60)
    (current,) = _current(fleet, "dev-1")
    assert current["imageDigest"] == image.manifests[PLATFORM]
    assert [i.manifest_digest for i in rt.running()] == [image.manifests[PLATFORM]]
    assert rt.config_of(rt.running()[0]) == {"THRESHOLD": "0.5"}
    for digest in image.blobs[PLATFORM]:
        assert state.blob(digest).exists()


def test_reports_made_while_the_gateway_is_gone_all_arrive_once(
    crds, fleet, gateway, registry, registry_client, signing_key, tmp_path
) -> None:
    image = push_image(
        registry_client,
        f"edgefleet/models/{fleet.namespace}/cam",
        signing_key,
        platforms=(PLATFORM,),
    )
    state = _enrol(fleet, "dev-2", f"https://127.0.0.1:{gateway.port}", tmp_path / "s")
    _set_desired(fleet, "dev-2", 1, image, "cam", "1.0.0")
    rt = SimulatedRuntime()
    with _Running(state, rt) as agent:
        fleet.wait_condition("dev-2", "Ready", "True", timeout=60)
        gateway.stop()
        wait_until(lambda: len(agent.queue) >= 4, timeout=60, what="reports queued offline")
        assert [i.manifest_digest for i in rt.running()] == [image.manifests[PLATFORM]]
        last = agent.queue.next_seq() - 1
        with GatewayReplica(gateway.cfg, crds.kubeconfig):
            wait_until(
                lambda: len(agent.queue) == 0 or agent.reporter.acked >= last,
                timeout=60,
                what="queue replayed",
            )
            wait_until(
                lambda: (fleet.get("dev-2").get("status") or {}).get("reportSeq", 0) >= last,
                timeout=30,
                what="reportSeq on the EdgeDevice",
            )
        assert agent.reporter.acked >= last
    assert rt.started == rt.running()  # never restarted while offline


_GATEWAY = """
import asyncio, functools, sys
from kubernetes import client, config
from edgefleet.clients import pki, tokens
from edgefleet.clients.kube import KubeClient
from edgefleet.gateway.config import GatewayConfig
from edgefleet.gateway.server import serve
from edgefleet.testing.gatewayrun import loopback_config
import dataclasses
ns, port, kubeconfig, registry, ca = sys.argv[1:6]
cfg = dataclasses.replace(loopback_config(ns, "gw-kill"), port=int(port),
                          registry_url=registry, registry_ca=ca)
api = config.new_client_from_config(config_file=kubeconfig)
load = functools.partial(pki.load_or_create, api, ns, cfg.names,
                         device_cert_lifetime=cfg.cert_lifetime)
redeem = functools.partial(tokens.redeem, client.CoreV1Api(api), ns)
asyncio.run(serve(cfg, kube=KubeClient.from_environment(kubeconfig), load_pki=load,
                  redeem=redeem, started=lambda gw: print("serving", flush=True)))
"""


def _spawn_gateway(crds, registry, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _GATEWAY,
            GW_NS,
            str(port),
            str(crds.kubeconfig),
            registry.url,
            str(registry.ca_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("serving"):
            return proc
    proc.wait(timeout=10)
    raise RuntimeError(f"the gateway exited with {proc.returncode}")


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def test_gateway_killed_mid_download_resumes_without_refetching(
    crds, fleet, gateway, registry, registry_client, signing_key, tmp_path
) -> None:
    size = 96 * 1024 * 1024
    image = push_image(
        registry_client,
        f"edgefleet/models/{fleet.namespace}/big",
        signing_key,
        platforms=(PLATFORM,),
        big_layer_bytes=size,
    )
    port = free_port()
    proc = _spawn_gateway(crds, registry, port)
    try:
        state = _enrol(fleet, "dev-3", f"https://127.0.0.1:{port}", tmp_path / "s")
        _set_desired(fleet, "dev-3", 1, image, "big", "1.0.0")
        big = state.blob(image.big_layer or "")
        partial = big.with_name(big.name + ".partial")
        rt = SimulatedRuntime()
        with _Running(state, rt) as agent:
            wait_until(
                lambda: partial.exists() and partial.stat().st_size > 8 * 1024 * 1024,
                timeout=60,
                what="download under way",
                interval=0.005,
            )
            _kill(proc)
            at_kill = partial.stat().st_size
            assert at_kill < size, "the download finished before the kill"
            proc = _spawn_gateway(crds, registry, port)
            fleet.wait_condition("dev-3", "Ready", "True", timeout=120)
            resumed = agent.activator.timings.bytes_received
        assert big.exists()
        blobs = sum(os.path.getsize(state.blob(d)) for d in image.blobs[PLATFORM])
        # The second attempt fetched only what the first had not stored.
        assert resumed <= blobs - at_kill
        assert [i.manifest_digest for i in rt.running()] == [image.manifests[PLATFORM]]
    finally:
        if proc.poll() is None:
            _kill(proc)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs: a device whose disk is almost full."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_is_refused_up_front_and_enospc_leaves_nothing(
    fleet, gateway, registry_client, signing_key, small_disk
) -> None:
    from edgefleet_node.agent import identity, pull
    from edgefleet_node.agent.client import GatewayClient
    from edgefleet_node.agent.clock import Clock

    small = push_image(
        registry_client,
        f"edgefleet/models/{fleet.namespace}/cam",
        signing_key,
        platforms=(PLATFORM,),
    )
    big = push_image(
        registry_client,
        f"edgefleet/models/{fleet.namespace}/cam",
        signing_key,
        platforms=(PLATFORM,),
        big_layer_bytes=12 * 1024 * 1024,
    )
    state = _enrol(fleet, "dev-4", f"https://127.0.0.1:{gateway.port}", small_disk / "s")
    _set_desired(fleet, "dev-4", 1, small, "cam", "1.0.0")
    rt = SimulatedRuntime()
    with _Running(state, rt):
        fleet.wait_condition("dev-4", "Ready", "True", timeout=60)
        _set_desired(fleet, "dev-4", 2, big, "cam", "2.0.0")
        wait_until(
            lambda: (
                (fleet.condition("dev-4", "UpdateFailed") or {}).get("reason") == "InsufficientDisk"
            ),
            timeout=60,
            what="UpdateFailed InsufficientDisk",
        )
        assert [i.manifest_digest for i in rt.running()] == [small.manifests[PLATFORM]]
    assert not list(state.blobs.glob("*.partial"))
    # Past a preflight that was fooled (another writer filled the disk meanwhile):
    # ENOSPC mid-download is a clear DiskFull and the partial file is gone.
    ident = identity.load(state)
    client = GatewayClient(ident.gateway, ident.ca_pem, ident.client_pem, Clock())
    workload = _workload(fleet, "dev-4")
    resolved = pull.resolve(client, workload, ident.trust.image_keys)
    with pytest.raises(pull.PullError) as failed:
        pull.download(client, resolved, state, stall_timeout=10)
    assert failed.value.reason == "DiskFull"
    assert not list(state.blobs.glob("*.partial"))
    assert os.statvfs(small_disk).f_bfree > 0


def _workload(fleet: Fleet, device: str) -> Any:
    from edgefleet_node.protocol import desired

    (want,) = fleet.get(device)["status"]["desired"]
    return desired.Workload(
        name=want["model"],
        version=want["version"],
        repository=want["repository"],
        index_digest=want["indexDigest"],
        manifest_digest=want["imageDigest"],
        platform=PLATFORM,
    )


def test_renewal_then_revocation_and_the_way_back(
    fleet, gateway, registry_client, signing_key, tmp_path
) -> None:
    """Renewal (forced due: the gateway's shortest lifetime is 10 minutes), then the
    certificate refused (revoked; an expired one takes the same way back, tested
    against the stand-in in the unit tests), then a new token: the workload stays."""
    from edgefleet_node.agent import identity

    image = push_image(
        registry_client,
        f"edgefleet/models/{fleet.namespace}/cam",
        signing_key,
        platforms=(PLATFORM,),
    )
    url = f"https://127.0.0.1:{gateway.port}"
    state = _enrol(fleet, "dev-5", url, tmp_path / "s")
    first = identity.load(state)
    doc = store.read_json(state.identity / "identity.json") or {}
    doc["renewAt"] = time.time() - 1  # due now
    store.write_json(state.identity / "identity.json", doc, 0o600)
    _set_desired(fleet, "dev-5", 1, image, "cam", "1.0.0")
    rt = SimulatedRuntime()
    with _Running(state, rt):
        fleet.wait_condition("dev-5", "Ready", "True", timeout=60)
        wait_until(
            lambda: identity.load(state).serial != first.serial,
            timeout=30,
            what="certificate renewed",
        )
        renewed = identity.load(state)
        assert renewed.renew_at > time.time()
        wait_until(
            lambda: _serial(fleet, "dev-5") == renewed.serial,
            timeout=30,
            what="the gateway saw the renewed certificate in use",
        )
        (workload,) = rt.running()
        subprocess.run(
            [
                str(Path(sys.executable).parent / "edgefleet"),
                "device",
                "revoke",
                "dev-5",
                "-n",
                fleet.namespace,
                "--kubeconfig",
                str(fleet.cp.kubeconfig),
            ],
            check=True,
        )
        wait_until(
            lambda: (store.read_json(state.status) or {}).get("refused") is True,
            timeout=30,
            what="the agent sees the refusal",
        )
        shown = cli.status(agent_config.Config(state_dir=state.root))
        assert "edgefleet-node enroll" in shown["hint"]
        assert rt.running() == [workload]
        cli.enroll_device(
            agent_config.Config(state_dir=state.root, platform=PLATFORM),
            url,
            enroll.BootstrapToken.parse(fleet.token("dev-5")),
        )
        wait_until(lambda: _connection(state) == "Online", timeout=30, what="Online again")
        fleet.wait_condition("dev-5", "Enrolled", "True", timeout=30)
        fleet.wait_condition("dev-5", "Ready", "True", timeout=60)
        assert rt.running() == [workload]
        assert rt.started == [workload]  # never restarted


def _serial(fleet: Fleet, device: str) -> int:
    enrollment = (fleet.get(device).get("status") or {}).get("enrollment") or {}
    return int(str(enrollment.get("certificateSerial") or "0"), 16)


def _connection(state: store.StateDir) -> str | None:
    doc = store.read_json(state.status) or {}
    return doc.get("connection")


def _forge_signature(registry_client, image: PushedImage, key, claim: str) -> None:
    """Replace the platform manifest's signature with a valid one of ``claim``."""
    from edgefleet.domain import oci, signing

    digest = image.manifests[PLATFORM]
    payload = signing.build_payload(f"{registry_client.host}/{image.repository}", claim)
    layer = signing.signature_layer(payload, signing.sign_payload(key, payload))
    sig = signing.signature_image([layer])
    registry_client.push_blob(image.repository, oci.Blob(payload, layer.media_type))
    registry_client.push_blob(image.repository, sig.config)
    registry_client.put_manifest(image.repository, signing.signature_tag(digest), sig.manifest)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("foreign-key", "SignatureInvalid"),
        ("signed-other-digest", "SignatureInvalid"),
        ("corrupt-on-registry-disk", "BlobDigestMismatch"),
    ],
)
def test_a_bad_image_from_the_registry_changes_nothing(
    fleet, gateway, registry, registry_client, signing_key, tmp_path, fault, reason
) -> None:
    from edgefleet.domain import signing

    repo = f"edgefleet/models/{fleet.namespace}/cam"
    good = push_image(registry_client, repo, signing_key, platforms=(PLATFORM,), text="good")
    key = signing.generate_key() if fault == "foreign-key" else signing_key
    bad = push_image(
        registry_client, repo, key, platforms=(PLATFORM,), text="bad", big_layer_bytes=1024 * 1024
    )
    if fault == "signed-other-digest":
        _forge_signature(registry_client, bad, signing_key, claim=good.manifests[PLATFORM])
    elif fault == "corrupt-on-registry-disk":
        hexd = (bad.big_layer or "")[7:]
        data = registry.storage_dir / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    state = _enrol(fleet, "dev-6", f"https://127.0.0.1:{gateway.port}", tmp_path / "s")
    _set_desired(fleet, "dev-6", 1, good, "cam", "1")
    rt = SimulatedRuntime()
    with _Running(state, rt):
        fleet.wait_condition("dev-6", "Ready", "True", timeout=60)
        _set_desired(fleet, "dev-6", 2, bad, "cam", "2")
        wait_until(
            lambda: (fleet.condition("dev-6", "UpdateFailed") or {}).get("reason") == reason,
            timeout=60,
            what=f"UpdateFailed {reason}",
        )
        assert [i.manifest_digest for i in rt.running()] == [good.manifests[PLATFORM]]
        assert not any(i.manifest_digest == bad.manifests[PLATFORM] for i in rt.started)
    assert not state.blob(bad.big_layer or "").exists()


@pytest.mark.parametrize("years", [5, -5])
def test_a_device_clock_far_off_uses_gateway_time(
    fleet, gateway, registry_client, signing_key, tmp_path, years
) -> None:
    from edgefleet_node.agent.clock import Clock

    shift = years * 365 * 86400.0
    image = push_image(
        registry_client,
        f"edgefleet/models/{fleet.namespace}/cam",
        signing_key,
        platforms=(PLATFORM,),
    )
    state = _enrol(fleet, "dev-7", f"https://127.0.0.1:{gateway.port}", tmp_path / "s")
    _set_desired(fleet, "dev-7", 1, image, "cam", "1")
    clock = Clock(wall=lambda: time.time() + shift)
    agent = Agent(state, SimulatedRuntime(), SETTINGS, clock)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        fleet.wait_condition("dev-7", "Ready", "True", timeout=60)
        assert abs(clock.offset + shift) < 60  # the gateway's Date corrected it
        skew = {c.type: c for c in agent.reporter.conditions()}["ClockSkew"]
        assert (skew.status, skew.reason) == ("True", "DeviceClockWrong")
        # Renewal is judged by gateway time: not due, whatever the device clock says.
        assert agent.identity.renew_at > clock.time() > agent.identity.renew_at - 7 * 86400
    finally:
        agent.stop()
        thread.join(timeout=15)


def test_the_agent_sigkilled_repeatedly_restarts_cleanly(
    fleet, gateway, registry_client, signing_key, tmp_path
) -> None:
    """The agent process killed with SIGKILL at arbitrary moments (mid-download, mid
    state write, mid report) restarts every time and ends Ready, never re-running or
    losing the workload it committed."""
    image = push_image(
        registry_client,
        f"edgefleet/models/{fleet.namespace}/cam",
        signing_key,
        platforms=(PLATFORM,),
        big_layer_bytes=48 * 1024 * 1024,
    )
    state = _enrol(fleet, "dev-8", f"https://127.0.0.1:{gateway.port}", tmp_path / "s")
    _set_desired(fleet, "dev-8", 1, image, "cam", "1")
    exe = str(Path(sys.executable).parent / "edgefleet-node")
    argv = [
        exe,
        "--state-dir",
        str(state.root),
        "--log-level",
        "warning",
        "run",
        "--runtime",
        "simulated",
        "--poll-wait",
        "5",
        "--report-interval",
        "1",
    ]
    big = state.blob(image.big_layer or "")
    partial = big.with_name(big.name + ".partial")
    kills = 0
    for stage in ("downloading", "running", "running", "running"):
        proc = subprocess.Popen(argv)
        try:
            if stage == "downloading":
                wait_until(
                    lambda: partial.exists() and partial.stat().st_size > 0,
                    timeout=60,
                    what="download under way",
                    interval=0.005,
                )
            else:
                seq = _queued_seq(state)
                wait_until(
                    lambda: _queued_seq(state) > seq,
                    timeout=30,  # noqa: B023
                    what="a report written",
                    interval=0.005,
                )
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
    proc = subprocess.Popen(argv)
    try:
        fleet.wait_condition("dev-8", "Ready", "True", timeout=120)
        running = json.loads((state.root / "simulated.json").read_text())["running"]
        assert [r["manifest_digest"] for r in running] == [image.manifests[PLATFORM]]
        assert big.exists()
        for path in (state.runtime, state.desired, state.status, state.identity / "identity.json"):
            assert path.exists()
            json.loads(path.read_text())  # every state file loads
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # SIGTERM: a clean stop
    assert kills == 4


def _queued_seq(state: store.StateDir) -> int:
    meta = store.read_json(state.reports / "meta.json") or {}
    return int(meta.get("nextSeq", 0))
