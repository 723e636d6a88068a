"""The agent against the real gateway, API server and TLS registry, under faults: a
full disk (preflight, and ENOSPC mid-download through the loop), renewal and
revocation, bad images from the registry, the agent process SIGKILLed again and
again. (A device clock far off: ``test_agent_clock.py``.)"""

from __future__ import annotations

import errno
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.testing.procs import wait_until
from edgefleet.testing.tinyimage import PushedImage, push_image
from edgefleet_node.agent import cli, store
from edgefleet_node.agent import config as agent_config
from edgefleet_node.agent.simulated import SimulatedRuntime
from edgefleet_node.protocol import enroll
from tests.integration.agent_fixtures import (
    PLATFORM,
    Running,
    connection,
    current_workloads,
    enrol,
    set_desired,
)
from tests.integration.gateway_fixtures import Fleet
from tests.integration.tcpgate import TcpGate


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs: a device with little disk."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(where: Path, leave: int) -> Path:
    """Another writer takes all free space on ``where`` but ``leave`` bytes."""
    filler = where / "filler"
    with filler.open("wb") as out:
        for _ in range(100):  # the download keeps taking space meanwhile
            stat = os.statvfs(where)
            try:
                os.posix_fallocate(out.fileno(), 0, max(stat.f_bavail * stat.f_frsize - leave, 1))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                out.truncate(0)
                continue
            return filler
    raise AssertionError("could not fill the disk")


def _update_failed(fleet: Fleet, device: str) -> dict[str, Any]:
    return fleet.condition(device, "UpdateFailed") or {}


def test_a_full_disk_is_refused_up_front_and_enospc_leaves_nothing(
    agent_fleet, agent_gateway, registry_client, image_signing_key, small_disk, capfd, request
) -> None:
    """Through the agent loop: an image larger than the disk is refused by the
    preflight; one that fits, with the disk filled by another writer mid-download, ends
    in ENOSPC (``DiskFull``, the partial file deleted); the old workload serves
    throughout, and once space is freed the update goes through by itself."""
    repo = f"edgefleet/models/{agent_fleet.namespace}/cam"
    small = push_image(registry_client, repo, image_signing_key, platforms=(PLATFORM,))
    big = push_image(
        registry_client,
        repo,
        image_signing_key,
        platforms=(PLATFORM,),
        big_layer_bytes=48 * 1024 * 1024,
    )
    mid = push_image(
        registry_client,
        repo,
        image_signing_key,
        platforms=(PLATFORM,),
        big_layer_bytes=16 * 1024 * 1024,
    )
    # The agent talks through a relay that can hold the layer mid-transfer (below).
    gate = TcpGate(agent_gateway.port)
    request.addfinalizer(gate.close)
    state = enrol(agent_fleet, "dev-4", f"https://127.0.0.1:{gate.port}", small_disk / "s")
    set_desired(agent_fleet, "dev-4", 1, small, "cam", "1.0.0")
    rt = SimulatedRuntime()
    old = [small.manifests[PLATFORM]]
    with Running(state, rt):
        agent_fleet.wait_condition("dev-4", "Ready", "True", timeout=60)
        set_desired(agent_fleet, "dev-4", 2, big, "cam", "2.0.0")
        wait_until(
            lambda: _update_failed(agent_fleet, "dev-4").get("reason") == "InsufficientDisk",
            timeout=60,
            what="UpdateFailed InsufficientDisk",
        )
        refused = _update_failed(agent_fleet, "dev-4")["message"]
        assert "cam" in refused, refused
        assert [i.manifest_digest for i in rt.running()] == old
        assert not state.blob(big.big_layer or "").exists()

        # Past the preflight, another writer fills the disk while the layer streams in:
        # the relay lets at most 4 MiB more reach the agent (documents, then the start
        # of the 16 MiB layer) and holds the transfer there until the disk is full.
        gate.hold_after(4 * 1024 * 1024)
        set_desired(agent_fleet, "dev-4", 3, mid, "cam", "3.0.0")
        layer = state.blob(mid.big_layer or "")
        partial = layer.with_name(layer.name + ".partial")
        wait_until(
            lambda: partial.exists() and gate.held, timeout=60, what="the layer held mid-transfer"
        )
        filler = _fill(small_disk, leave=256 * 1024)
        gate.release()
        assert not layer.exists()
        wait_until(
            lambda: (
                _update_failed(agent_fleet, "dev-4").get("reason")
                in ("DiskFull", "InsufficientDisk")
                and _update_failed(agent_fleet, "dev-4")["message"] != refused
            ),
            timeout=60,
            what="UpdateFailed for the full disk",
        )
        logged = capfd.readouterr().err
        assert '"reason": "DiskFull"' in logged, "ENOSPC mid-download was the failure"
        assert [i.manifest_digest for i in rt.running()] == old
        assert mid.manifests[PLATFORM] not in rt.images()
        assert not any(i.manifest_digest == mid.manifests[PLATFORM] for i in rt.started)
        assert not layer.exists()
        assert not list(state.blobs.glob("*.partial")), "nothing half-installed"

        filler.unlink()  # space freed: retried with backoff, no new document needed
        wait_until(
            lambda: (
                [c.get("imageDigest") for c in current_workloads(agent_fleet, "dev-4")]
                == [mid.manifests[PLATFORM]]
            ),
            timeout=60,
            what="the update active once space is free",
        )
        agent_fleet.wait_condition("dev-4", "Ready", "True", timeout=60)
        assert _update_failed(agent_fleet, "dev-4").get("status") == "False"
        assert [i.manifest_digest for i in rt.running()] == [mid.manifests[PLATFORM]]
    assert layer.exists()
    assert not list(state.blobs.glob("*.partial"))


def test_renewal_then_revocation_and_the_way_back(
    agent_fleet, agent_gateway, registry_client, image_signing_key, tmp_path
) -> None:
    """Renewal (forced due: the gateway's shortest lifetime is 10 minutes), then the
    certificate refused (revoked; an expired one takes the same way back, tested
    against the stand-in in the unit tests), then a new token: the workload stays."""
    from edgefleet_node.agent import identity

    image = push_image(
        registry_client,
        f"edgefleet/models/{agent_fleet.namespace}/cam",
        image_signing_key,
        platforms=(PLATFORM,),
    )
    url = f"https://127.0.0.1:{agent_gateway.port}"
    state = enrol(agent_fleet, "dev-5", url, tmp_path / "s")
    first = identity.load(state)
    doc = store.read_json(state.identity / "identity.json") or {}
    doc["renewAt"] = time.time() - 1  # due now
    store.write_json(state.identity / "identity.json", doc, 0o600)
    set_desired(agent_fleet, "dev-5", 1, image, "cam", "1.0.0")
    rt = SimulatedRuntime()
    with Running(state, rt):
        agent_fleet.wait_condition("dev-5", "Ready", "True", timeout=60)
        wait_until(
            lambda: identity.load(state).serial != first.serial,
            timeout=30,
            what="certificate renewed",
        )
        renewed = identity.load(state)
        assert renewed.renew_at > time.time()
        wait_until(
            lambda: _serial(agent_fleet, "dev-5") == renewed.serial,
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
                agent_fleet.namespace,
                "--kubeconfig",
                str(agent_fleet.cp.kubeconfig),
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
            enroll.BootstrapToken.parse(agent_fleet.token("dev-5")),
        )
        wait_until(lambda: connection(state) == "Online", timeout=30, what="Online again")
        agent_fleet.wait_condition("dev-5", "Enrolled", "True", timeout=30)
        agent_fleet.wait_condition("dev-5", "Ready", "True", timeout=60)
        assert rt.running() == [workload]
        assert rt.started == [workload]  # never restarted


def _serial(fleet: Fleet, device: str) -> int:
    enrollment = (fleet.get(device).get("status") or {}).get("enrollment") or {}
    return int(str(enrollment.get("certificateSerial") or "0"), 16)


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
    agent_fleet,
    agent_gateway,
    registry,
    registry_client,
    image_signing_key,
    tmp_path,
    fault,
    reason,
) -> None:
    from edgefleet.domain import signing

    repo = f"edgefleet/models/{agent_fleet.namespace}/cam"
    good = push_image(registry_client, repo, image_signing_key, platforms=(PLATFORM,), text="good")
    key = signing.generate_key() if fault == "foreign-key" else image_signing_key
    bad = push_image(
        registry_client, repo, key, platforms=(PLATFORM,), text="bad", big_layer_bytes=1024 * 1024
    )
    if fault == "signed-other-digest":
        _forge_signature(registry_client, bad, image_signing_key, claim=good.manifests[PLATFORM])
    elif fault == "corrupt-on-registry-disk":
        hexd = (bad.big_layer or "")[7:]
        data = registry.storage_dir / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    state = enrol(agent_fleet, "dev-6", f"https://127.0.0.1:{agent_gateway.port}", tmp_path / "s")
    set_desired(agent_fleet, "dev-6", 1, good, "cam", "1")
    rt = SimulatedRuntime()
    with Running(state, rt):
        agent_fleet.wait_condition("dev-6", "Ready", "True", timeout=60)
        set_desired(agent_fleet, "dev-6", 2, bad, "cam", "2")
        wait_until(
            lambda: (agent_fleet.condition("dev-6", "UpdateFailed") or {}).get("reason") == reason,
            timeout=60,
            what=f"UpdateFailed {reason}",
        )
        assert [i.manifest_digest for i in rt.running()] == [good.manifests[PLATFORM]]
        assert not any(i.manifest_digest == bad.manifests[PLATFORM] for i in rt.started)
    assert not state.blob(bad.big_layer or "").exists()


def test_the_agent_sigkilled_repeatedly_restarts_cleanly(
    agent_fleet, agent_gateway, registry_client, image_signing_key, tmp_path
) -> None:
    """The agent process killed with SIGKILL at arbitrary moments (mid-download, mid
    state write, mid report) restarts every time and ends Ready, never re-running or
    losing the workload it committed."""
    image = push_image(
        registry_client,
        f"edgefleet/models/{agent_fleet.namespace}/cam",
        image_signing_key,
        platforms=(PLATFORM,),
        big_layer_bytes=48 * 1024 * 1024,
    )
    state = enrol(agent_fleet, "dev-8", f"https://127.0.0.1:{agent_gateway.port}", tmp_path / "s")
    set_desired(agent_fleet, "dev-8", 1, image, "cam", "1")
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
                    functools.partial(_seq_above, state, seq),
                    timeout=30,
                    what="a report written",
                    interval=0.005,
                )
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
    proc = subprocess.Popen(argv)
    try:
        agent_fleet.wait_condition("dev-8", "Ready", "True", timeout=120)
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


def _seq_above(state: store.StateDir, seq: int) -> bool:
    return _queued_seq(state) > seq


def _queued_seq(state: store.StateDir) -> int:
    meta = store.read_json(state.reports / "meta.json") or {}
    return int(meta.get("nextSeq", 0))
