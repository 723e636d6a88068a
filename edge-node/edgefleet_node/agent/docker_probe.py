"""How the Docker runtime judges a started container healthy, or says why it is not.

:func:`probe` watches the container while it waits for ``/healthz`` (an exit, an
engine restart or a model that failed to load ends the wait at once, with the exit
code, an out-of-memory kill and the last log lines in the message), then runs the
probe inference (:mod:`~edgefleet_node.agent.workload_http` builds the request and
judges the answer against the expected output and tolerance).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Mapping
from typing import Any

from edgefleet_node.agent import workload_http
from edgefleet_node.agent.docker_api import DockerAPI, NotFoundError
from edgefleet_node.agent.runtime import Instance, ProbeResult
from edgefleet_node.protocol.desired import Probe

__all__ = ["GONE", "exit_message", "probe"]

#: Container states that mean it has stopped for good.
GONE = frozenset({"exited", "dead"})
_POLL = 0.2


def probe(
    docker: DockerAPI, host: str, instance: Instance, spec: Probe | None, deadline: float
) -> ProbeResult:
    """Healthy when ``/healthz`` answers 200 and the probe inference (if any) passes."""
    if instance.port is None:
        return ProbeResult(False, "ProbeFailed", f"{instance.workload}: no port recorded")
    last = "no answer yet"
    while True:
        try:
            container = docker.inspect(instance.id)
        except NotFoundError:
            return ProbeResult(False, "Exited", f"{instance.workload}: the container is gone")
        state = container.get("State") or {}
        restarted = int(container.get("RestartCount") or 0) > 0  # Podman
        if state.get("Status") in GONE or state.get("Restarting") or restarted:
            return ProbeResult(False, "Exited", exit_message(docker, container))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return ProbeResult(
                False, "HealthTimeout", f"{instance.workload}: not healthy in time: {last}"
            )
        try:
            answer = workload_http.request(
                host, instance.port, "GET", "/healthz", None, min(2.0, remaining)
            )
        except (OSError, http.client.HTTPException) as exc:
            last = f"/healthz: {exc}"
        else:
            if answer.status == 200:
                break
            text = answer.body[:300].decode("utf-8", "replace")
            if b'"failed"' in answer.body:
                return ProbeResult(False, "ProbeFailed", f"the model failed to load: {text}")
            last = f"/healthz answered {answer.status}: {text}"
        threading.Event().wait(min(_POLL, max(remaining, 0)))
    if spec is None:
        return ProbeResult(True)
    return _inference(host, instance.port, spec, deadline)


def _inference(host: str, port: int, spec: Probe, deadline: float) -> ProbeResult:
    try:
        body = workload_http.probe_body(spec)
    except ValueError as exc:
        return ProbeResult(False, "ProbeFailed", f"the probe input is malformed: {exc}")
    timeout = max(deadline - time.monotonic(), 1.0)
    try:
        answer = workload_http.request(host, port, "POST", "/v1/predict", body, timeout)
    except (OSError, http.client.HTTPException) as exc:
        return ProbeResult(False, "ProbeFailed", f"probe inference failed: {exc}")
    verdict = workload_http.judge(spec, answer)
    details = {} if verdict.max_error is None else {"maxError": f"{verdict.max_error:.6g}"}
    if not verdict.ok:
        return ProbeResult(False, "ProbeFailed", verdict.message, details)
    return ProbeResult(True, details=details)


def exit_message(docker: DockerAPI, container: Mapping[str, Any]) -> str:
    """Why the container stopped: exit code or restarts, an OOM kill, its last log lines."""
    state = container.get("State") or {}
    try:
        tail = docker.logs(str(container["Id"]), 5).decode("utf-8", "replace").strip()
    except Exception:  # logs are a courtesy; the exit code is the fact
        tail = ""
    restarts = int(container.get("RestartCount") or 0)
    if state.get("Status") in GONE or not restarts:
        text = f"container exited with code {state.get('ExitCode')}"
    else:  # restarted by the engine after exiting (Podman starts it unless-stopped)
        text = f"container exited and was restarted {restarts} time(s)"
    if state.get("OOMKilled"):
        text += " (killed: out of memory)"
    return f"{text}; last log lines: {tail[-600:]}" if tail else text
