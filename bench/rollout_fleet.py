"""The fake fleet of bench/rollout.py, and the baseline it reports under.

The fleet runs as :data:`SHARDS` processes of :mod:`edgefleet.testing.fleetshard`
(each watching only its shard of the devices, :data:`SHARD_WORKERS` report writers
each), so what is measured is the controller and the API server, not the bench's own
GIL. The baseline is the API server's ceiling for the same writes with no controller
in the way: :data:`BASELINE_WRITERS` plain server-side applies at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from kubernetes import client, config
from tests.e2e import rollout_helpers as h

from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.procs import wait_until

__all__ = ["BASELINE_WRITERS", "SHARDS", "SHARD_WORKERS", "Fleet", "baseline"]

#: Fleet processes, and report writers in each (10k real devices write independently).
SHARDS, SHARD_WORKERS = 4, 8
#: The baseline's concurrent applies (as many as the controller's writers).
BASELINE_WRITERS = 32
_APPLY = "application/apply-patch+yaml"


class Fleet:
    """The fake fleet as :data:`SHARDS` processes (edgefleet.testing.fleetshard)."""

    def __init__(self, cp: ControlPlane, ns: str, n: int, work: Path) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[TextIO] = []
        for i in range(SHARDS):
            log = (work / f"fleet-{ns}-{i}.log").open("w")
            self.logs.append(log)
            argv = [sys.executable, "-m", "edgefleet.testing.fleetshard",
                    "--kubeconfig", str(cp.kubeconfig), "--namespace", ns,
                    "--shard", f"{i}/{SHARDS}", "--devices", str(n), "--label", "site=berlin",
                    "--workers", str(SHARD_WORKERS)]  # fmt: skip
            pipe = subprocess.PIPE
            self.procs.append(
                subprocess.Popen(argv, stdin=pipe, stdout=pipe, stderr=log, text=True)
            )
        for proc in self.procs:
            self._read(proc)  # {"ready": …}

    @staticmethod
    def _read(proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fleet shard exited (code {proc.wait()}); see its log")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def _ask(self, command: str) -> list[dict[str, Any]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
        return [self._read(proc) for proc in self.procs]

    def reports(self) -> int:
        return sum(int(doc["reports"]) for doc in self._ask("count"))

    def stop(self) -> dict[str, dict[str, dict[str, float]]]:
        """Stop every shard; each device's notified/ready instants by revision."""
        devices: dict[str, dict[str, dict[str, float]]] = {}
        try:
            for doc in self._ask("stop"):
                devices.update(doc["devices"])
        finally:
            self.close()
        return devices

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


def _baseline_body(ns: str, name: str, template: dict[str, Any]) -> dict[str, Any]:
    desired = [dict(w, imageDigest=h.digest("baseline", w["model"])) for w in template["desired"]]
    return {
        "apiVersion": "edgefleet.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": name, "namespace": ns},
        "status": {
            "desired": desired,
            "previous": template.get("previous") or [],
            "desiredRevision": 2,
            "desiredVersion": template.get("desiredVersion"),
        },
    }


def baseline(cp: ControlPlane, ns: str, n: int, fleet: Fleet) -> tuple[float, float, float]:
    """The API server's ceiling for the same writes: plain applies of a new
    ``status.desired`` to every device (32 at once), the fleet reporting on each.
    Returns (start, all writes answered, all reports in) as monotonic instants."""
    conf = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cp.kubeconfig), client_configuration=conf
    )
    conf.connection_pool_maxsize = BASELINE_WRITERS
    objects = client.CustomObjectsApi(client.ApiClient(conf))
    template = h.get(objects, ns, "edgedevices", "dev-00000")["status"]
    bodies = [_baseline_body(ns, f"dev-{i:05d}", template) for i in range(n)]
    reports0 = fleet.reports()

    def apply(body: dict[str, Any]) -> None:
        raw: Any = objects.patch_namespaced_custom_object_status(
            "edgefleet.io", "v1alpha1", ns, "edgedevices", body["metadata"]["name"], body,
            field_manager="bench-baseline", force=True, _content_type=_APPLY,
            _preload_content=False,
        )  # fmt: skip
        if raw.status >= 300:  # not parsed, but never silently failed
            raise RuntimeError(f"baseline apply: HTTP {raw.status} {raw.data[:200]!r}")
        raw.drain_conn()  # read to the end: the connection goes back to the pool
        raw.release_conn()

    start = time.monotonic()
    with ThreadPoolExecutor(BASELINE_WRITERS) as pool:
        list(pool.map(apply, bodies))
    written = time.monotonic()
    wait_until(lambda: fleet.reports() - reports0 >= n, timeout=1800, interval=0.2,
               what="baseline reports")  # fmt: skip
    return start, written, time.monotonic()
