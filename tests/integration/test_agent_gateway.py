"""The agent against the real gateway, API server and TLS registry (simulated runtime:
the Docker runtime has its own tests): enrol with a token, pull a signed image through
the gateway's /v2/, report Ready with the digest on the EdgeDevice; the gateway killed
(SIGKILL) mid-download and the download resumed; the gateway gone for two minutes and
every report delivered after reconnect, none lost or twice (the gateway's own count)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

from edgefleet.testing.gatewayrun import GatewayReplica
from edgefleet.testing.procs import free_port, wait_until
from edgefleet.testing.tinyimage import push_image
from edgefleet_node.agent.simulated import SimulatedRuntime
from tests.integration.agent_fixtures import (
    PLATFORM,
    SETTINGS,
    Running,
    connection,
    current_workloads,
    enrol,
    set_desired,
)
from tests.integration.gateway_fixtures import GW_NS


def test_enrol_pull_through_the_gateway_and_report_ready(
    agent_fleet, agent_gateway, registry_client, image_signing_key, tmp_path
) -> None:
    image = push_image(
        registry_client,
        f"edgefleet/models/{agent_fleet.namespace}/cam",
        image_signing_key,
        platforms=(PLATFORM,),
    )
    state = enrol(agent_fleet, "dev-1", f"https://127.0.0.1:{agent_gateway.port}", tmp_path / "s")
    agent_fleet.wait_condition("dev-1", "Enrolled", "True")
    set_desired(agent_fleet, "dev-1", 1, image, "cam", "1.0.0")
    rt = SimulatedRuntime()
    with Running(state, rt):
        agent_fleet.wait_condition("dev-1", "Ready", "True", timeout=60)
    (current,) = current_workloads(agent_fleet, "dev-1")
    assert current["imageDigest"] == image.manifests[PLATFORM]
    assert [i.manifest_digest for i in rt.running()] == [image.manifests[PLATFORM]]
    assert rt.config_of(rt.running()[0]) == {"THRESHOLD": "0.5"}
    for digest in image.blobs[PLATFORM]:
        assert state.blob(digest).exists()


OUTAGE = 120.0  # seconds the gateway stays down: minutes, not a blip
OFFLINE = dataclasses.replace(SETTINGS, report_interval=2.0, backoff_cap=15.0)


def _reports(replica: GatewayReplica, outcome: str) -> float:
    """``edgefleet_gateway_reports_total{outcome}`` of one replica."""
    assert replica.gateway is not None
    value = replica.gateway.metrics.registry.get_sample_value(
        "edgefleet_gateway_reports_total", {"outcome": outcome}
    )
    return value or 0.0


def _queued_seqs(state) -> list[int]:
    return sorted(int(p.stem) for p in state.reports.glob("*.json") if p.stem.isdigit())


def test_reports_made_while_the_gateway_is_gone_all_arrive_once(
    crds, agent_fleet, agent_gateway, registry, registry_client, image_signing_key, tmp_path
) -> None:
    """The gateway down for two minutes (the agent's poll backoff reaches its cap): the
    workload answers throughout and, after reconnect, the real gateway takes every report
    made meanwhile exactly once and in order (its per-report counter: no duplicate, no
    gap, as many accepted as seqs sent)."""
    image = push_image(
        registry_client,
        f"edgefleet/models/{agent_fleet.namespace}/cam",
        image_signing_key,
        platforms=(PLATFORM,),
    )
    state = enrol(agent_fleet, "dev-2", f"https://127.0.0.1:{agent_gateway.port}", tmp_path / "s")
    instance = json.loads((state.identity / "identity.json").read_text())["instanceId"]
    set_desired(agent_fleet, "dev-2", 1, image, "cam", "1.0.0")
    rt = SimulatedRuntime()
    key = (agent_fleet.namespace, "dev-2")
    with contextlib.ExitStack() as stack:
        with Running(state, rt, OFFLINE) as agent:
            agent_fleet.wait_condition("dev-2", "Ready", "True", timeout=60)
            agent_gateway.stop()
            down = time.monotonic()
            wait_until(lambda: agent.reporter.last_error is not None, timeout=30, what="noticed")
            acked_before = agent.reporter.acked  # final: the reporter failed since
            (serving,) = rt.running()

            def outage_over() -> bool:
                result = rt.probe(serving, None, time.monotonic() + 1)
                assert result.healthy, f"the workload stopped answering offline: {result}"
                return time.monotonic() - down >= OUTAGE

            wait_until(outage_over, timeout=OUTAGE + 30, what="the outage", interval=0.5)
            assert connection(state) == "Offline"
            backoff = agent._backoff  # the poll loop's: at its cap after two minutes
            assert backoff.base * 2**backoff.failures >= OFFLINE.backoff_cap
            queued = _queued_seqs(state)
            first, last = acked_before + 1, queued[-1]
            assert queued == list(range(first, last + 1)), "the offline queue has a hole"
            assert len(queued) >= OUTAGE / OFFLINE.report_interval / 2
            assert [i.manifest_digest for i in rt.running()] == [image.manifests[PLATFORM]]
            back = stack.enter_context(GatewayReplica(agent_gateway.cfg, crds.kubeconfig))
            wait_until(lambda: agent.reporter.acked >= last, timeout=60, what="queue replayed")
        # the agent has stopped: what the gateway took is final
        wait_until(
            lambda: (agent_fleet.get("dev-2").get("status") or {}).get("reportSeq", 0) >= last,
            timeout=60,
            what="reportSeq on the EdgeDevice",
        )
        assert back.gateway is not None
        routes = back.gateway.routes
        newest = back.call(lambda: routes.ledger.known(key, instance, 0))
        assert newest >= last
        assert _reports(back, "duplicate") == 0, "a report arrived twice"
        assert _reports(back, "gap") == 0, "a report is missing"
        assert _reports(back, "accepted") == newest - first + 1  # every seq, once
    assert _reports(agent_gateway, "duplicate") == _reports(agent_gateway, "gap") == 0
    assert _reports(agent_gateway, "accepted") >= acked_before > 0
    assert rt.started == rt.running() == [serving]  # never restarted while offline


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
    crds, agent_fleet, agent_gateway, registry, registry_client, image_signing_key, tmp_path
) -> None:
    size = 96 * 1024 * 1024
    image = push_image(
        registry_client,
        f"edgefleet/models/{agent_fleet.namespace}/big",
        image_signing_key,
        platforms=(PLATFORM,),
        big_layer_bytes=size,
    )
    port = free_port()
    proc = _spawn_gateway(crds, registry, port)
    try:
        state = enrol(agent_fleet, "dev-3", f"https://127.0.0.1:{port}", tmp_path / "s")
        set_desired(agent_fleet, "dev-3", 1, image, "big", "1.0.0")
        big = state.blob(image.big_layer or "")
        partial = big.with_name(big.name + ".partial")
        rt = SimulatedRuntime()
        with Running(state, rt) as agent:
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
            agent_fleet.wait_condition("dev-3", "Ready", "True", timeout=120)
            resumed = agent.activator.timings.bytes_received
        assert big.exists()
        blobs = sum(os.path.getsize(state.blob(d)) for d in image.blobs[PLATFORM])
        # The second attempt fetched only what the first had not stored (plus the index,
        # manifest and signature documents, a few KiB).
        assert resumed <= blobs - at_kill + 64 * 1024
        assert [i.manifest_digest for i in rt.running()] == [image.manifests[PLATFORM]]
    finally:
        if proc.poll() is None:
            _kill(proc)
