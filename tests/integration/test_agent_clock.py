"""A device clock five years ahead or behind, for real: the ``edgefleet-node`` process
runs under libfaketime (``LD_PRELOAD``), so both Python's ``time.time()`` and OpenSSL's
certificate-time checks in the TLS handshake see the wrong clock, against the real
gateway, API server and TLS registry (simulated runtime).

The agent must still reach the gateway (the server certificate is expired or not yet
valid by the device clock: the ``NO_CHECK_TIME`` retry, chain and name still checked),
judge the desired-state document and its certificate by gateway time (the ``Date``
header), run the workload, and the EdgeDevice must show ``Ready`` with the digest, with
sane times. Each test first proves the fake clock reaches OpenSSL in that environment,
so a libfaketime that stopped working would fail here instead of passing vacuously.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.testing.procs import wait_until
from edgefleet.testing.tinyimage import PushedImage, push_image
from edgefleet_node.agent import store
from edgefleet_node.protocol import wire
from tests.integration.agent_fixtures import PLATFORM, current_workloads, enrol, set_desired
from tests.integration.gateway_fixtures import Fleet

pytestmark = pytest.mark.integration

LIBFAKETIME = Path(
    f"/usr/lib/{sysconfig.get_config_var('MULTIARCH') or 'x86_64-linux-gnu'}"
    "/faketime/libfaketime.so.1"
)  # Debian's libfaketime
YEAR = 365 * 86400
EXE = str(Path(sys.executable).parent / "edgefleet-node")

# Run inside the faked environment: the device's view of time and of the gateway's TLS.
_PROBE = """
import json, socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.load_cert_chain(sys.argv[2]) if len(sys.argv) > 3 else None
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[-1])), timeout=10) as raw:
        ctx.wrap_socket(raw, server_hostname="127.0.0.1").close()
    verdict = "ok"
except ssl.SSLCertVerificationError as exc:
    verdict = exc.verify_message
print(json.dumps({"time": time.time(), "tls": verdict}))
"""


def _faked_env(years: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME": f"{years:+d}y",
            # Waits and deadlines stay on the real monotonic clock (a device's RTC being
            # wrong does not make its monotonic clock jump).
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
    )
    return env


@pytest.fixture
def faketime() -> Path:
    if not LIBFAKETIME.exists():
        pytest.skip(f"{LIBFAKETIME} missing: install libfaketime (hack/system-deps.sh)")
    return LIBFAKETIME


def _probe(env: dict[str, str], ca: Path, port: int, client_pem: Path | None) -> dict[str, Any]:
    argv = [sys.executable, "-c", _PROBE, str(ca)]
    if client_pem is not None:
        argv.append(str(client_pem))
    out = subprocess.run([*argv, str(port)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def _assert_fake_clock_reaches_openssl(
    env: dict[str, str], years: int, ca: Path, port: int
) -> None:
    """The precondition of the whole test: in this environment Python's wall clock is
    ``years`` off and OpenSSL refuses the gateway's certificate on time grounds."""
    seen = _probe(env, ca, port, None)
    assert abs(seen["time"] - time.time() - years * YEAR) < 3 * 86400, seen
    expected = "certificate has expired" if years > 0 else "certificate is not yet valid"
    assert seen["tls"] == expected, seen
    # ... and the same handshake with the real clock passes (it is the clock, not the CA).
    assert _probe(dict(os.environ), ca, port, None)["tls"] == "ok"


def _near_now(text: str, what: str, slack: float = 600.0) -> None:
    moment = wire.parse_time(text, what).timestamp()
    assert abs(moment - time.time()) < slack, f"{what} {text} is not near the real time"


def _push_cam(fleet: Fleet, registry_client: Any, signing_key: Any) -> PushedImage:
    return push_image(
        registry_client,
        f"edgefleet/models/{fleet.namespace}/cam",
        signing_key,
        platforms=(PLATFORM,),
    )


def _enrol_faked(
    fleet: Fleet, device: str, url: str, root: Path, env: dict[str, str]
) -> store.StateDir:
    """``edgefleet-node enroll`` as its own process under the faked clock ``env``."""
    fleet.device(device, PLATFORM)
    enrolled = subprocess.run(
        [EXE, "--state-dir", str(root), "enroll", "--gateway", url, "--platform", PLATFORM],
        env={**env, "EDGEFLEET_NODE_TOKEN": fleet.token(device)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    return store.StateDir(root)


def _run_argv(root: Path) -> list[str]:
    return [EXE, "--state-dir", str(root), "--log-level", "warning", "run", "--runtime",
            "simulated", "--poll-wait", "5", "--report-interval", "1"]  # fmt: skip


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


@pytest.mark.parametrize("at_enrolment", [False, True], ids=["after-enrolment", "at-enrolment"])
@pytest.mark.parametrize("years", [5, -5], ids=["+5y", "-5y"])
def test_a_device_clock_far_off_uses_gateway_time(
    agent_fleet: Fleet,
    agent_gateway: Any,
    registry_client: Any,
    image_signing_key: Any,
    tmp_path: Path,
    faketime: Path,
    processes: list[subprocess.Popen[bytes]],
    years: int,
    at_enrolment: bool,
) -> None:
    device = "dev-clock"
    url = f"https://127.0.0.1:{agent_gateway.port}"
    env = _faked_env(years)
    image = _push_cam(agent_fleet, registry_client, image_signing_key)
    root = tmp_path / "state"
    if at_enrolment:  # the device clock is already wrong when it enrols
        state = _enrol_faked(agent_fleet, device, url, root, env)
    else:  # enrolled with a right clock; the clock goes wrong later (a dead RTC battery)
        state = enrol(agent_fleet, device, url, root)
    _assert_fake_clock_reaches_openssl(
        env, years, state.identity / "gateway-ca.pem", agent_gateway.port
    )
    ident = json.loads((state.identity / "identity.json").read_text())
    not_after = wire.parse_time(ident["notAfter"], "notAfter").timestamp()
    # Renewal is planned in gateway time: after now, before the certificate's end.
    assert time.time() < ident["renewAt"] < not_after, ident
    set_desired(agent_fleet, device, 1, image, "cam", "1")

    proc = subprocess.Popen(_run_argv(root), env=env)
    processes.append(proc)
    agent_fleet.wait_condition(device, "Ready", "True", timeout=120)

    # The workload runs: the digest on the EdgeDevice and in the (simulated) runtime.
    current = current_workloads(agent_fleet, device)
    assert [(w["model"], w["imageDigest"]) for w in current] == [("cam", image.manifests[PLATFORM])]
    running = json.loads((root / "simulated.json").read_text())["running"]
    assert [r["manifest_digest"] for r in running] == [image.manifests[PLATFORM]]
    status = agent_fleet.get(device)["status"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["UpdateFailed"]["status"] == "False", conds["UpdateFailed"]
    # What the gateway records is in gateway time.
    _near_now(status["lastSeen"], "lastSeen")
    for cond in conds.values():
        _near_now(cond["lastTransitionTime"], f"condition {cond['type']}")
    _near_now(status["enrollment"]["enrolledAt"], "enrolledAt")
    assert (
        0
        < wire.parse_time(status["enrollment"]["notAfter"], "notAfter").timestamp() - time.time()
        <= 366 * 86400
    )

    # The agent's own view: it knows its clock is off by the shift and says so; every
    # time it reports (conditions, last contact) is gateway time.
    def agent_status() -> dict[str, Any]:
        return store.read_json(state.status) or {}

    wait_until(
        lambda: any(c["type"] == "ClockSkew" for c in agent_status().get("conditions", [])),
        timeout=30,
        what="the agent's status.json with ClockSkew",
    )
    seen = agent_status()
    assert abs(seen["clockOffset"] + years * YEAR) < 3 * 86400, seen["clockOffset"]
    skew = {c["type"]: c for c in seen["conditions"]}["ClockSkew"]
    assert (skew["status"], skew["reason"]) == ("True", "DeviceClockWrong"), skew
    for cond in seen["conditions"]:
        _near_now(cond["lastTransitionTime"], f"agent condition {cond['type']}")
    assert abs(seen["lastContact"] - time.time()) < 600
    assert seen["connection"] == "Online"
    # Nor did the wrong clock trigger a renewal (due "years ago" or "in years"): the
    # certificate is still the enrolled one.
    assert json.loads((state.identity / "identity.json").read_text())["serial"] == ident["serial"]
    assert "previousSerial" not in status["enrollment"]

    proc.terminate()
    assert proc.wait(timeout=30) == 0  # SIGTERM: a clean stop
    # The report the agent queues as it stops (not sent: the agent is gone) carries
    # gateway time too, as every report it sent did (they come from the same clock).
    queued = [p for p in state.reports.glob("*.json") if p.name != "meta.json"]
    assert queued, "the agent queued no report on stopping"
    for path in queued:
        _near_now(json.loads(path.read_text())["time"], f"queued report {path.name}")


def test_enrolled_years_ahead_then_started_offline_is_offline_not_expired(
    agent_fleet: Fleet,
    agent_gateway: Any,
    registry_client: Any,
    image_signing_key: Any,
    tmp_path: Path,
    faketime: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """Enrolled with the clock five years ahead, then started while the gateway is down:
    the offset learnt at enrolment is used from the first turn, so the agent says
    ``Offline`` (not ``CertificateExpired`` with a hint to enrol again, as it did
    before the offset was kept) and stamps its conditions in gateway time; when the
    gateway is back it goes Ready."""
    from edgefleet.testing.gatewayrun import GatewayReplica

    device = "dev-clock-off"
    url = f"https://127.0.0.1:{agent_gateway.port}"
    env = {**_faked_env(5), "EDGEFLEET_NODE_BACKOFF_CAP": "2"}
    image = _push_cam(agent_fleet, registry_client, image_signing_key)
    root = tmp_path / "state"
    state = _enrol_faked(agent_fleet, device, url, root, env)
    set_desired(agent_fleet, device, 1, image, "cam", "1")
    agent_gateway.stop()

    processes.append(subprocess.Popen(_run_argv(root), env=env))
    wait_until(
        lambda: (store.read_json(state.status) or {}).get("connection") not in (None, "Starting"),
        timeout=60,
        what="the agent's first turn",
    )
    shown = subprocess.run(
        [EXE, "--state-dir", str(root), "status", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    seen = json.loads(shown.stdout)
    assert seen["connection"] == "Offline", seen
    assert "hint" not in seen, seen
    assert abs(seen["clockOffsetSeconds"] + 5 * YEAR) < 3 * 86400
    for cond in seen["conditions"]:
        _near_now(cond["lastTransitionTime"], f"agent condition {cond['type']}")

    with GatewayReplica(agent_gateway.cfg, agent_gateway.kubeconfig):  # back, same port
        agent_fleet.wait_condition(device, "Ready", "True", timeout=120)
        current = current_workloads(agent_fleet, device)
        assert [w["imageDigest"] for w in current] == [image.manifests[PLATFORM]]
