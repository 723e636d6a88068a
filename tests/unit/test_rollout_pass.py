"""The rollout controller follows the one reconcile pattern: whatever escapes a pass,
the Rollout's status is written and tells the truth (typed failure, retried), never a
stale "Progressing"."""

from __future__ import annotations

import copy
import datetime
import threading
from collections import Counter
from typing import Any

import pytest

from edgefleet.domain.rollout import DeviceWrite
from edgefleet.handlers.rollout import RolloutController
from tests.unit import rollout_world as w


def _body(obj: Any, rv: int) -> dict[str, Any]:
    body: dict[str, Any] = obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    body["metadata"]["resourceVersion"] = str(rv)
    body.setdefault("apiVersion", "edgefleet.io/v1alpha1")
    return body


class _Api:
    """An in-memory API server for the controller (unit test only): it stores what is
    applied and can be told to break device writes with an unexpected exception."""

    def __init__(self) -> None:
        self.rv = 100
        self.devices: dict[str, dict[str, Any]] = {}
        self.rollouts: dict[str, dict[str, Any]] = {}
        self.events: list[str] = []
        self.broken: Exception | None = None

    def apply_device(self, write: DeviceWrite) -> dict[str, Any]:
        if self.broken is not None:
            raise self.broken
        self.rv += 1
        dev = copy.deepcopy(self.devices[write.name])
        dev["status"] = {**(dev.get("status") or {}), **write.apply_body()["status"]}
        dev["metadata"]["resourceVersion"] = str(self.rv)
        self.devices[write.name] = dev
        return dev

    def apply_status(self, namespace: str, name: str, status: Any) -> dict[str, Any]:
        self.rv += 1
        ro = copy.deepcopy(self.rollouts[name])
        ro["status"] = status.wire()
        ro["metadata"]["resourceVersion"] = str(self.rv)
        self.rollouts[name] = ro
        return ro

    def post_event(self, rollout: Any, event: Any) -> None:
        self.events.append(event.reason)


def _pass(controller: RolloutController) -> None:
    """One pass, then wait for its device writes (they overlap the next pass)."""
    controller.run_pass()
    controller.drain(timeout=5)


def _conds(api: _Api) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in api.rollouts["r"]["status"]["conditions"]}


def _controller(api: _Api) -> RolloutController:
    now = w.T0 + datetime.timedelta(seconds=5)
    controller = RolloutController(api, clock=lambda: now)  # type: ignore[arg-type]
    controller.observe("inferencemodels", "ADDED", _body(w.model(), 1))
    ro = _body(w.rollout(), 2)
    ro["metadata"]["generation"] = 1
    api.rollouts["r"] = ro
    controller.observe("rollouts", "ADDED", ro)
    return controller


def _add_device(api: _Api, controller: RolloutController, name: str) -> None:
    api.rv += 1
    api.devices[name] = _body(w.device(name), api.rv)
    controller.observe("edgedevices", "ADDED", api.devices[name])


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyError("desired")])
def test_an_unexpected_exception_mid_pass_leaves_a_truthful_status(error: Exception) -> None:
    api = _Api()
    controller = _controller(api)
    _add_device(api, controller, "d0")
    _pass(controller)
    assert api.devices["d0"]["status"]["desired"][0]["version"] == "2.0.0"
    before = _conds(api)
    assert before["Reconciling"]["status"] == "True"
    assert before["Reconciling"]["reason"] != "InternalError"

    # A late joiner's write fails with something nobody expected: the write runs after
    # its pass, so the rollout's next pass fails with it.
    _add_device(api, controller, "d1")
    api.broken = error
    _pass(controller)
    assert controller.in_flight() == 0
    _pass(controller)
    conds = _conds(api)
    assert conds["Reconciling"]["status"] == "True"
    assert conds["Reconciling"]["reason"] == "InternalError"
    assert type(error).__name__ in conds["Reconciling"]["message"]
    assert conds["Ready"]["status"] in ("False", "Unknown")
    assert type(error).__name__ in api.rollouts["r"]["status"]["message"]
    assert "InternalError" in api.events
    assert not (api.devices["d1"].get("status") or {}).get("desired")

    # Backoff: the next passes leave the rollout alone until it is due ...
    api.broken = None
    _pass(controller)
    assert not (api.devices["d1"].get("status") or {}).get("desired")
    # ... and when it is due, the pass succeeds and the failure is gone from status.
    controller.backoff.clear()
    _pass(controller)
    assert api.devices["d1"]["status"]["desired"][0]["version"] == "2.0.0"
    assert _conds(api)["Reconciling"]["reason"] != "InternalError"
    assert api.devices["d0"]["status"]["desiredRevision"] == 1  # never written twice


def test_a_failing_planner_still_writes_status_on_the_first_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = _Api()
    controller = _controller(api)
    _add_device(api, controller, "d0")

    def broken(world: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("edgefleet.handlers.rollout.decide", broken)
    _pass(controller)
    status = api.rollouts["r"]["status"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Reconciling"]["reason"] == "InternalError"
    assert conds["Ready"]["status"] in ("False", "Unknown")
    # A temporary failure does not claim the generation was observed (kstatus: InProgress).
    assert status.get("observedGeneration", 0) == 0


def test_a_permanent_failure_waits_for_a_change_then_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from edgefleet.domain import rollout as rollout_domain
    from edgefleet.domain.failures import FailureError
    from edgefleet.handlers import rollout as handler

    api = _Api()
    controller = _controller(api)
    _add_device(api, controller, "d0")
    real = rollout_domain.decide

    def refuses(world: Any) -> Any:
        raise FailureError("InvalidSpec", "spec.model: refused", permanent=True)

    monkeypatch.setattr(handler, "decide", refuses)
    _pass(controller)
    conds = _conds(api)
    assert conds["Stalled"]["status"] == "True"
    assert conds["Stalled"]["reason"] == "InvalidSpec"
    assert api.rollouts["r"]["status"]["observedGeneration"] == 1

    monkeypatch.setattr(handler, "decide", real)
    _pass(controller)  # same generation and annotations: not retried
    assert not (api.devices["d0"].get("status") or {}).get("desired")

    # `kubectl edgefleet rollout retry` is an annotation: the next pass runs.
    ro = copy.deepcopy(api.rollouts["r"])
    ro["metadata"].setdefault("annotations", {})["edgefleet.io/retry"] = "1"
    api.rv += 1
    ro["metadata"]["resourceVersion"] = str(api.rv)
    api.rollouts["r"] = ro
    controller.observe("rollouts", "MODIFIED", ro)
    _pass(controller)
    assert api.devices["d0"]["status"]["desired"][0]["version"] == "2.0.0"


class _SlowApi(_Api):
    """Device writes wait until the test lets them through (a busy API server)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.applied: Counter[str] = Counter()

    def apply_device(self, write: DeviceWrite) -> dict[str, Any]:
        assert self.gate.wait(timeout=5)
        self.applied[write.name] += 1
        return super().apply_device(write)


def test_writes_overlap_the_next_pass_and_none_is_written_twice() -> None:
    api = _SlowApi()
    controller = _controller(api)
    for i in range(6):
        _add_device(api, controller, f"d{i}")
    try:
        controller.run_pass()
        assert controller.in_flight() == 6  # the pass ended; its writes wait on the server
        controller.run_pass()  # the next pass decides meanwhile: nothing new to write
        counts = api.rollouts["r"]["status"]["counts"]
        assert counts["updated"] == 6
        assert controller.in_flight() == 6
    finally:
        api.gate.set()
    controller.drain(timeout=5)
    _pass(controller)
    assert api.applied == {f"d{i}": 1 for i in range(6)}
    assert {d["status"]["desiredRevision"] for d in api.devices.values()} == {1}
