"""``edgefleet demo``: the system running locally, on loopback, from real components.

1. a control plane (etcd, kube-apiserver, kube-controller-manager) and the CRDs; with
   ``--no-builds`` the example fleet from ``manifests/examples`` is applied and the
   demo stops there;
2. otherwise (the default where the services are installed): an OCI registry with
   TLS, the multi-arch Debian base images, the operator as its own process, and the
   example model — a real ONNX file served on 127.0.0.1 — built for linux/amd64 and
   linux/arm64, signed and pushed, with its conditions shown as they change;
3. the fleet story (:mod:`edgefleet.demo_fleet`): the gateway, three devices as
   containers running the real agent, 1.0.0 rolled out, a live canary of 2.0.0, an
   inference answered by a device, and a broken 3.0.0 that aborts and rolls back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog
import yaml

from edgefleet import demo_fleet
from edgefleet.clients import baseimage
from edgefleet.demo_fleet import say
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.files import file_server
from edgefleet.testing.models import make_mlp
from edgefleet.testing.procs import Service, ServiceError, wait_until
from edgefleet.testing.registry import LocalRegistry, registry_unavailable

__all__ = ["run_demo"]

log = structlog.get_logger("edgefleet.demo")
OPERATOR_NS = "edgefleet-system"
DEMO_NS = "edgefleet-demo"
MODEL = "defect-detector"
MODEL_FILE = "20-model.yaml"


def _repo_path(*parts: str) -> Path:
    for parent in Path(__file__).resolve().parents:
        candidate = parent.joinpath(*parts)
        if candidate.exists():
            return candidate
    raise SystemExit(f"cannot find {'/'.join(parts)}: run the demo from an edgefleet checkout")


def _show(cp: ControlPlane, title: str, *args: str) -> None:
    print(f"\n$ kubectl {' '.join(args)}    # {title}", flush=True)
    print(cp.kubectl(*args).stdout.rstrip(), flush=True)


def run_demo(*, keep: bool, builds: bool) -> int:
    crds, examples = _repo_path("crds"), _repo_path("manifests", "examples")
    started = time.monotonic()
    say("Step 1: a Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) "
        "and edgefleet's CRDs.")  # fmt: skip
    log.info("starting control plane", components="etcd, kube-apiserver, kube-controller-manager")
    with ControlPlane(keep_dir=keep) as cp:
        log.info("control plane ready", url=cp.url, seconds=round(time.monotonic() - started, 1))
        cp.kubectl("apply", "--server-side", "-f", str(crds))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))
        log.info("CRDs established", directory=str(crds))
        builds = builds and _services_available()
        # With builds, the demo's devices are real agents in containers and the model's
        # weights are served on 127.0.0.1 (the examples' URL is not reachable from here,
        # and never tried): of the examples only the namespace is applied.
        files = sorted(examples.glob("*.yaml"))
        for path in files[:1] if builds else files:
            for line in cp.kubectl("apply", "-f", str(path)).stdout.splitlines():
                log.info("applied", object=line)
        if not builds:
            _show(cp, "the example fleet", "get", "edgefleet", "-A")
        with contextlib.ExitStack() as stack:
            if builds:
                say("Step 2: a TLS registry, the base images and the operator; the operator "
                    "builds, signs and pushes the model for amd64 and arm64.")  # fmt: skip
                story = _build_example_model(cp, stack)
                _show(cp, "the model, built and signed", "get", "edgefleet", "-A")
                _show(
                    cp,
                    "per-platform digests",
                    "get",
                    "efmodel",
                    MODEL,
                    "-n",
                    DEMO_NS,
                    "-o",
                    "jsonpath={range .status.images[*]}{.platform}{'  '}"
                    "{.digest}{'  '}{.sizeBytes}{' bytes  '}"
                    "{.optimization.quantization}{' '}{.optimization.weightsBytes}"
                    "{' '}{.optimization.probeMaxAbsError}{'\\n'}{end}",
                )
                _tell_the_story(story)
            if keep:
                _wait_for_ctrl_c(cp)
        log.info("stopping", seconds=round(time.monotonic() - started, 1))
    return 0


def _services_available() -> bool:
    why = registry_unavailable()
    if why is not None:
        log.warning("skipping image builds", reason=why, fix="run hack/system-deps.sh as root")
    return why is None


def _wait_for_ctrl_c(cp: ControlPlane) -> None:
    print(
        f"\nRunning. In another shell:\n  export KUBECONFIG={cp.kubeconfig}\n"
        f"  {cp.tools.kubectl} get edgefleet -A\nPress Ctrl-C to stop.",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()


def _tell_the_story(story: demo_fleet.FleetStory) -> None:
    say("Step 3: the device gateway (`edgefleet gateway`), which devices enrol with and poll.")
    story.start_gateway()
    say("Step 4: three devices, each a container running the real agent image: two "
        "linux/amd64 and one linux/arm64 (under qemu, so it is slower).")  # fmt: skip
    story.start_devices(Path.home() / ".cache" / "edgefleet" / "demo-operator")
    say("Step 5: Rollout 1.0.0 to every Berlin device in one wave.")
    if story.rollout(f"{MODEL}-v1", "1.0.0", [{"setWeight": 100}]) != 0:
        raise ServiceError("the rollout of 1.0.0 did not complete")
    say("Step 6: new weights, version 2.0.0. The operator builds and signs them; then a "
        "canary: one device first, a pause, then everyone (live progress below).")  # fmt: skip
    v2 = story.new_version("2.0.0", seed=8, probe=None)
    steps: list[dict[str, Any]] = [
        {"setWeight": 33}, {"pause": {"duration": "20s"}}, {"setWeight": 100},
    ]  # fmt: skip
    if story.rollout(f"{MODEL}-v2", "2.0.0", steps) != 0:
        raise ServiceError("the canary of 2.0.0 did not complete")
    wait_until(lambda: story.devices_on("2.0.0"), timeout=600, what="every device on 2.0.0",
               alive=story.alive)  # fmt: skip
    story.plugin("device", "list")
    say("Step 7: an inference request to a device's workload (its own HTTP port).")
    story.infer(v2)
    say("Step 8: a bad version, 3.0.0: retrained weights whose answer no longer matches "
        "the probe. The canary's first device runs the probe, refuses it and keeps 2.0.0; "
        "the failure threshold trips, the rollout aborts and rolls back by itself.")  # fmt: skip
    story.new_version("3.0.0", seed=9, probe=v2)
    code = story.rollout(f"{MODEL}-v3", "3.0.0", [{"setWeight": 33}, {"pause": {}}])
    if code == 0:
        raise ServiceError("the broken 3.0.0 was rolled out; it should have aborted")
    wait_until(lambda: story.devices_on("2.0.0"), timeout=900, what="every device back on 2.0.0",
               alive=story.alive)  # fmt: skip
    say("Every device is back on 2.0.0, Ready, without anyone touching it:")
    story.plugin("device", "list")
    _show(story.cp, "the rollouts", "get", "rollouts.edgefleet.io", "-n", DEMO_NS)


def _build_example_model(cp: ControlPlane, stack: contextlib.ExitStack) -> demo_fleet.FleetStory:
    from edgefleet.clients.registry import RegistryClient

    registry = stack.enter_context(LocalRegistry())
    log.info("registry ready", url=registry.url)
    client = stack.enter_context(RegistryClient(registry.url, ca_bundle=registry.ca_path))
    log.info("pushing base images", note="first run builds Debian root filesystems: minutes")
    baseimage.push_base_index(
        client,
        "edgefleet/base",
        ["amd64", "arm64"],
        tag="bookworm",
        progress=lambda m: log.info("base image", step=m),
    )
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgefleet-demo-")))
    fixture = make_mlp(work / "defect-detector-1.0.0.onnx", target_bytes=4_000_000, seed=7)
    url = stack.enter_context(file_server(work))
    operator = _start_operator(cp, registry, work, stack)
    model = yaml.safe_load((_repo_path("manifests", "examples") / MODEL_FILE).read_text())
    model["spec"]["source"] = {
        "url": {"url": f"{url}/{fixture.path.name}", "sha256": fixture.sha256}
    }
    # int8 weights on amd64 answer within a few hundredths of the float model
    model["spec"]["probe"] = fixture.probe_spec(tolerance=0.05)
    cp.kubectl("apply", "-f", "-", input_text=json.dumps(model))
    log.info("model applied", model=MODEL, weights=str(fixture.path.name), bytes=fixture.size)
    _follow_conditions(cp, operator.check_alive)
    return demo_fleet.FleetStory(cp, registry, client, work, url, model, operator.check_alive,
                                 stack)  # fmt: skip


def _start_operator(
    cp: ControlPlane, registry: LocalRegistry, work: Path, stack: contextlib.ExitStack
) -> Service:
    cp.kubectl("create", "namespace", OPERATOR_NS)
    cache = Path.home() / ".cache" / "edgefleet" / "demo-operator"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")},
        "KUBECONFIG": str(cp.kubeconfig),
        "EDGEFLEET_NAMESPACE": OPERATOR_NS,
        "EDGEFLEET_REGISTRY_URL": registry.url,
        "EDGEFLEET_REGISTRY_CA": str(registry.ca_path),
        "EDGEFLEET_CACHE_DIR": str(cache),
    }
    operator = Service(
        "operator",
        [sys.executable, "-m", "edgefleet.cli", "--json-logs", "operator"],
        work / "operator.log",
        env=env,
    )
    stack.callback(operator.stop)
    wait_until(
        lambda: "operator starting" in operator.log_tail(100),
        timeout=60,
        what="the operator to start",
        alive=operator.check_alive,
    )
    log.info("operator running", log=str(work / "operator.log"))
    return operator


def _conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        c["type"]: (c["status"], c.get("reason", ""))
        for c in (obj.get("status") or {}).get("conditions", [])
    }


def _follow_conditions(cp: ControlPlane, alive: Callable[[], None], timeout: float = 1800) -> None:
    """Print each change of the model's conditions until Ready is True or False."""
    seen: dict[str, tuple[str, str]] = {}
    deadline = time.monotonic() + timeout
    for obj in _poll(cp, deadline, alive):
        now = _conditions(obj)
        for type_, value in sorted(now.items()):
            if seen.get(type_) != value:
                log.info("condition", model=MODEL, type=type_, status=value[0], reason=value[1])
        seen = now
        ready = now.get("Ready", ("", ""))[0]
        if ready == "True" or (ready == "False" and now.get("Stalled", ("",))[0] == "True"):
            return
    raise ServiceError(f"{MODEL} did not become Ready within {timeout:.0f}s")


def _poll(cp: ControlPlane, deadline: float, alive: Callable[[], None]) -> Iterator[dict[str, Any]]:
    while time.monotonic() < deadline:
        alive()
        yield json.loads(cp.kubectl("get", "efmodel", MODEL, "-n", DEMO_NS, "-o", "json").stdout)
        time.sleep(1.0)  # a human-paced refresh of the progress shown
