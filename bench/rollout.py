"""Benchmark of rollout convergence: the real API server, the operator process (rollout
controller only), and N fake-fleet devices (edgefleet.testing.fakefleet, standing in
for the gateway and agents: they report Healthy as soon as they see their desired
workload). The fleet runs in its own processes (edgefleet.testing.fleetshard, each
watching only its shard of the devices), so what is measured is the controller and the
API server, not the bench's own GIL.

For each N, one Rollout without pauses (``maxUnavailable: 100%``,
``minHealthyDuration: 1s``) of a model whose build status is written by the benchmark.
Measured:

- reaction: Rollout applied -> first device's desired entry seen by the fleet (watch);
- apply -> notified per device (p50/p99): when the fleet saw each device's desired entry;
- notified -> Ready per device (p50/p99): until the fleet wrote that device's Healthy
  report (its own queueing and API write, no simulated work);
- total: Rollout applied -> Rollout Ready=True (polled every 0.2 s);
- controller writes per device: PATCHes of edgedevices/status counted by the API
  server's ``apiserver_request_total`` minus the fleet's own (it counts them), and the
  sum of ``desiredRevision`` as a cross-check;
- operator CPU seconds (utime+stime from /proc) and peak RSS (VmHWM) during the rollout;
- **baseline, same run, operator stopped**: a minimal client (the bench, 32 threads,
  responses not parsed) server-side applies a new ``status.desired`` to the same N
  devices while the same fleet reports on each: the time until every write is answered,
  and until every device's report is in. That is what the API server on this machine
  allows for the same writes and reports, with no controller in the way;
- the 1-minute load average at the start and at the end.

    .venv/bin/python bench/rollout.py [--devices 1000 10000] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from kubernetes import client, config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e import rollout_helpers as h  # noqa: E402

from edgefleet.testing.controlplane import ControlPlane  # noqa: E402
from edgefleet.testing.procs import Service, wait_until  # noqa: E402
from edgefleet.testing.registry import LocalRegistry  # noqa: E402

SECTION = "## Rollout convergence"
#: Fleet processes, and report writers in each (10k real devices write independently).
SHARDS, SHARD_WORKERS = 4, 8
#: The baseline's concurrent applies (as many as the controller's writers).
BASELINE_WRITERS = 32
_APPLY = "application/apply-patch+yaml"
_PATCH = re.compile(
    r'^apiserver_request_total\{(?=[^}]*resource="edgedevices")(?=[^}]*subresource="status")'
    r'(?=[^}]*verb="(?:PATCH|APPLY)")[^}]*\} (\S+)$',
    re.M,
)


def _patches(cp: ControlPlane) -> float:
    return sum(float(v) for v in _PATCH.findall(cp.kubectl("get", "--raw", "/metrics").stdout))


def _proc(pid: int) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(
        int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM")
    )
    return cpu, hwm


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


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


def run(
    n: int,
    cp: ControlPlane,
    registry: LocalRegistry,
    work: Path,
    profile: Path | None = None,
    logs: Path | None = None,
) -> dict[str, float]:
    ns = f"bench-{n}"
    load0 = os.getloadavg()[0]
    cp.kubectl("create", "namespace", ns)
    api = h.objects(cp)
    h.put_model(api, ns, "2.0.0")
    fleet = Fleet(cp, ns, n, work)
    env = h.rollout_env(cp, registry)
    op = Service(
        "operator",
        [sys.executable, "-m", "edgefleet.cli", "--json-logs", "operator"],
        work / f"operator-{n}.log",
        env=env,
    )
    try:
        wait_until(
            lambda: "rollout controller started" in op.log_tail(50),
            timeout=300,
            what="operator start-up",
            alive=op.check_alive,
        )
        spy = None
        if profile is not None:  # py-spy (not a dependency: give its path in PY_SPY)
            out = profile / f"operator-{n}.txt"
            argv = [os.environ.get("PY_SPY", "py-spy"), "record", "--rate", "50",
                    "--pid", str(op.process.pid), "--format", "raw", "--output", str(out),
                    "--nonblocking"]  # fmt: skip
            spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0, _ = _proc(op.process.pid)
        patches0, reports0 = _patches(cp), fleet.reports()
        t0 = time.monotonic()
        h.apply_rollout(cp, ns, "bench", maxUnavailable="100%")

        def ready() -> bool:
            obj = h.get(api, ns, "rollouts", "bench")
            return h.cond(obj, "Ready").get("status") == "True"

        wait_until(ready, timeout=1800, interval=0.2, what="rollout Ready", alive=op.check_alive)
        total = time.monotonic() - t0
        cpu1, hwm = _proc(op.process.pid)
        controller_writes = (_patches(cp) - patches0) - (fleet.reports() - reports0)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        op.stop()
        for keep in {profile, logs} - {None}:
            shutil.copy(work / f"operator-{n}.log", Path(str(keep)) / f"operator-{n}.log")
        revisions = sum(
            (d.get("status") or {}).get("desiredRevision", 0) for d in h.devices(api, ns)
        )
        b_start, b_written, b_done = baseline(cp, ns, n, fleet)
        devices = fleet.stop()
    finally:
        op.stop()
        fleet.close()
    notified = [d["notified"]["1"] - t0 for d in devices.values() if "1" in d["notified"]]
    ready_lat = [
        d["ready"]["1"] - d["notified"]["1"]
        for d in devices.values()
        if "1" in d["ready"] and "1" in d["notified"]
    ]
    b_ready = [d["ready"]["2"] - b_start for d in devices.values() if "2" in d["ready"]]
    cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return {
        "devices": n,
        "reaction_s": min(notified),
        "notify_p50_s": _pct(notified, 50),
        "notify_p99_s": _pct(notified, 99),
        "ready_p50_s": _pct(ready_lat, 50),
        "ready_p99_s": _pct(ready_lat, 99),
        "total_s": total,
        "writes_per_device": controller_writes / n,
        "revisions_per_device": revisions / n,
        "operator_cpu_s": cpu1 - cpu0,
        "operator_rss_mb": hwm / 2**20,
        "baseline_writes_s": b_written - b_start,
        "baseline_total_s": max(b_ready) if len(b_ready) == n else b_done - b_start,
        "load_start": load0,
        "load_end": os.getloadavg()[0],
    }


def table(rows: list[dict[str, float]]) -> str:
    head = (
        "| devices | reaction | apply→notified p50 / p99 | notified→Ready p50 / p99 | total"
        " | controller writes/device (metrics; desiredRevision) | operator CPU | operator"
        " peak RSS | baseline: N applies answered / + every report in | load avg start →"
        " end |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['devices']:,.0f} | {r['reaction_s']:.2f} s | {r['notify_p50_s']:.1f} /"
        f" {r['notify_p99_s']:.1f} s | {r['ready_p50_s']:.2f} / {r['ready_p99_s']:.2f} s |"
        f" {r['total_s']:.1f} s | {r['writes_per_device']:.2f}; {r['revisions_per_device']:.2f}"
        f" | {r['operator_cpu_s']:.1f} s | {r['operator_rss_mb']:.0f} MB |"
        f" {r['baseline_writes_s']:.1f} / {r['baseline_total_s']:.1f} s |"
        f" {r['load_start']:.2f} → {r['load_end']:.2f} |\n"
        for r in rows
    )
    return head + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, nargs="+", default=[1000])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the operator; keep its log here"
    )
    parser.add_argument("--logs", type=Path, default=None, help="keep the operator's log here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ControlPlane() as cp, LocalRegistry() as reg:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
        for n in args.devices:
            rows.append(run(n, cp, reg, Path(tmp), args.profile, args.logs))
            print(json.dumps(rows[-1]), flush=True)
    text = table(rows)
    print(text)
    if args.out is not None:
        _write_section(args.out, text, " ".join(str(n) for n in args.devices))
    return 0


def _write_section(path: Path, text: str, devices: str) -> None:
    """Replace the section's command line and table; keep the prose after the table."""
    intro = (
        f"{SECTION}\n\n`.venv/bin/python bench/rollout.py --devices {devices} --out"
        " docs/benchmarks.md` starts its own API server and registry, the operator with only"
        " the rollout controller, and N fake-fleet devices in"
        f" {SHARDS} processes of their own (they stand in for gateway + agents and report"
        f" Healthy as soon as they see their desired workload; {SHARD_WORKERS} report"
        " writers each). One Rollout, no pauses, `maxUnavailable: 100%`,"
        " `minHealthyDuration: 1s`. Controller writes are PATCHes of `edgedevices/status`"
        " from `apiserver_request_total` minus the fleet's own reports. The baseline, in"
        f" the same run with the operator stopped: {BASELINE_WRITERS} concurrent plain"
        " server-side applies of a new `status.desired` to the same devices by a minimal"
        " client, with the same fleet reporting on each.\n\n"
    )
    doc = path.read_text()
    start = doc.find(SECTION)
    if start == -1:
        doc = doc.rstrip("\n") + "\n\n" + intro + text
    else:
        end = doc.find("\n## ", start + len(SECTION))
        section = doc[start:end] if end != -1 else doc[start:]
        rest = section.split("|\n\n", 1)[1] if "|\n\n" in section else ""
        tail = ("\n" + rest) if rest else ""
        doc = doc[:start] + intro + text + tail + (doc[end:] if end != -1 else "")
    path.write_text(doc)


if __name__ == "__main__":
    sys.exit(main())
