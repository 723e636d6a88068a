"""The agent against the real gateway, API server and TLS registry on a device with little
disk: an image larger than the disk is refused up front, ENOSPC mid-download through the
loop leaves nothing half-installed, and the update goes through once space is freed.
(Other faults: ``test_agent_gateway_revocation.py``, ``test_agent_gateway_bad_images.py``,
``test_agent_gateway_sigkill.py``; a device clock far off: ``test_agent_clock.py``.)"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.testing.procs import wait_until
from edgefleet.testing.tinyimage import push_image
from edgefleet_node.agent.simulated import SimulatedRuntime
from tests.integration.agent_fixtures import (
    PLATFORM,
    Running,
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
