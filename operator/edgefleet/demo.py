"""``edgefleet demo``: the system running locally, on loopback, from real components.

1. a control plane (etcd, kube-apiserver, kube-controller-manager), the CRDs and the
   example fleet from ``manifests/examples``;
2. with ``--builds`` (the default where the services are installed): an OCI registry
   with TLS, the multi-arch Debian base images, the operator as its own process, and
   the example model — a real ONNX file served on 127.0.0.1 — built for linux/amd64 and
   linux/arm64, signed and pushed, with its conditions shown as they change.
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

from edgefleet.testing import baseimage
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
    log.info("starting control plane", components="etcd, kube-apiserver, kube-controller-manager")
    with ControlPlane(keep_dir=keep) as cp:
        log.info("control plane ready", url=cp.url, seconds=round(time.monotonic() - started, 1))
        cp.kubectl("apply", "--server-side", "-f", str(crds))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))
        log.info("CRDs established", directory=str(crds))
        builds = builds and _services_available()
        # With builds, the example model is applied later with its weights served on
        # 127.0.0.1: its example URL is not reachable from here, and never tried.
        files = [
            p for p in sorted(examples.glob("*.yaml")) if not (builds and p.name == MODEL_FILE)
        ]
        for path in files:
            for line in cp.kubectl("apply", "-f", str(path)).stdout.splitlines():
                log.info("applied", object=line)
        _show(cp, "the example fleet", "get", "edgefleet", "-A")
        with contextlib.ExitStack() as stack:
            if builds:
                why = registry_unavailable()
                if why is not None:
                    log.warning(
                        "skipping image builds", reason=why, fix="run hack/system-deps.sh as root"
                    )
                else:
                    _build_example_model(cp, stack)
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


def _build_example_model(cp: ControlPlane, stack: contextlib.ExitStack) -> None:
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
    model["spec"]["probe"] = fixture.probe_spec(tolerance=0.001)
    cp.kubectl("apply", "-f", "-", input_text=json.dumps(model))
    log.info("model applied", model=MODEL, weights=str(fixture.path.name), bytes=fixture.size)
    _follow_conditions(cp, operator.check_alive)


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
