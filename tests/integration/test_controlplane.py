"""The local control plane harness: two at once, garbage collection and namespace
deletion by the real controller-manager, and a teardown that leaves nothing behind."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request

import pytest

from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.procs import wait_until


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


@pytest.mark.timeout(240)
def test_two_control_planes_run_side_by_side_and_tear_down(control_plane):
    # A second and third instance next to the session's: separate ports, CAs, data.
    with ControlPlane(controller_manager=False) as a, ControlPlane(controller_manager=False) as b:
        assert len({a.port, b.port, control_plane.port}) == 3
        a.kubectl("create", "namespace", "only-in-a")
        assert "only-in-a" not in b.kubectl("get", "namespaces").stdout
        # Each serves with its own CA: a client of one does not trust the other.
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(  # noqa: S310 - https://127.0.0.1
                f"{b.url}/readyz", context=_context_for(a), timeout=5
            )
        pids = [s.process.pid for s in a._services + b._services]
        dirs = [a.dir, b.dir]
    assert _pids_alive(pids) == []
    assert not any(d.exists() for d in dirs)


def _context_for(cp: ControlPlane) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cp.ca_path))
    ctx.load_cert_chain(str(cp.dir / "admin.crt"), str(cp.dir / "admin.key"))
    return ctx


def test_controller_manager_collects_garbage_and_deletes_namespaces(control_plane, namespace):
    cp = control_plane
    cp.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = json.loads(
        cp.kubectl("get", "configmap", "owner", "-n", namespace, "-o", "json").stdout
    )
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
    }
    cp.kubectl("apply", "-f", "-", input_text=json.dumps(dependent))
    cp.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_until(
        lambda: (
            cp.kubectl("get", "configmap", "dependent", "-n", namespace, check=False).returncode
            != 0
        ),
        timeout=60,
        interval=0.5,
        what="garbage collection of the dependent",
    )
    cp.kubectl("create", "namespace", f"{namespace}-gone")
    cp.kubectl("delete", "namespace", f"{namespace}-gone", "--wait=false")
    wait_until(
        lambda: cp.kubectl("get", "namespace", f"{namespace}-gone", check=False).returncode != 0,
        timeout=90,
        interval=0.5,
        what="namespace deletion to finish",
    )
