"""The reconcile pattern: status always written on exit, failures typed, one generation."""

from __future__ import annotations

import kopf
import pytest

from edgefleet.api.conditions import Reason
from edgefleet.api.inferencemodel import InferenceModelStatus
from edgefleet.api.inferencemodel_parts import Probe
from edgefleet.domain import modelstatus
from edgefleet.domain.failures import FailureError
from edgefleet.handlers.reconcile import ObjectRef, Pass
from edgefleet.handlers.triggers import ObjectLocks
from tests.unit import model_builds

REF = ObjectRef("InferenceModel", "inferencemodels", "ns", "m", generation=3)


class Store:
    """Stands in for the API server's status subresource: a versioned record."""

    def __init__(self, fail: bool = False) -> None:
        self.status: dict | None = None
        self.resource_version = 0
        self.fail = fail

    def write(self, ref: ObjectRef, status: InferenceModelStatus) -> None:
        if self.fail:
            raise ConnectionError("API server unavailable")
        self.status = status.wire()
        self.resource_version += 1

    def condition(self, type_: str) -> dict:
        return next(c for c in (self.status or {})["conditions"] if c["type"] == type_)


def _pass(store: Store, observed: InferenceModelStatus | None = None) -> Pass:
    return Pass(
        REF,
        observed,
        write=store.write,
        on_failure=modelstatus.from_failure,
        event=lambda *_: None,
    )


def test_an_unexpected_exception_is_written_as_a_temporary_failure_and_retried():
    store = Store()

    def run() -> None:
        with _pass(store) as p:
            p.status = modelstatus.building(p.status, generation=p.generation, build_key="k")
            p.checkpoint()
            raise KeyError("boom")

    with pytest.raises(kopf.TemporaryError):
        run()
    reconciling = store.condition("Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", Reason.INTERNAL_ERROR)
    assert store.condition("Built")["reason"] == Reason.INTERNAL_ERROR
    assert "KeyError" in store.condition("Built")["message"]
    assert store.condition("Reconciling")["observedGeneration"] == 3
    assert store.condition("Reconciling")["reason"] != Reason.BUILDING


def test_a_permanent_failure_stalls_and_kopf_stops_retrying():
    store = Store()
    with _pass(store):
        raise FailureError(Reason.SOURCE_DIGEST_MISMATCH, "sha256 differs", permanent=True)
    assert store.condition("Stalled")["status"] == "True"
    assert store.condition("Reconciling")["status"] == "False"
    assert store.condition("Ready")["status"] == "False"
    assert store.status["observedGeneration"] == 3


def test_an_invalid_body_is_invalid_spec_and_stalled():
    store = Store()
    with _pass(store):
        Probe.model_validate({"inputName": "x", "shape": [2], "values": [1.0]})
    assert store.condition("Built")["reason"] == Reason.INVALID_SPEC
    assert store.condition("Stalled")["status"] == "True"


def test_status_is_written_on_exit_and_not_again_when_unchanged():
    store = Store()
    with _pass(store) as p:
        p.status = modelstatus.building(None, generation=p.generation, build_key="k", now="T")
    assert store.resource_version == 1
    observed = InferenceModelStatus.model_validate(store.status)
    with _pass(store, observed) as p:
        p.status = modelstatus.building(p.status, generation=p.generation, build_key="k", now="T")
    assert store.resource_version == 1, "an unchanged status is not written"


def test_a_failed_status_write_is_retried_as_temporary():
    with pytest.raises(kopf.TemporaryError, match="status write failed"), _pass(Store(True)) as p:
        p.status = modelstatus.building(None, generation=p.generation, build_key="k")


def test_a_temporary_failure_keeps_a_ready_build_ready_and_says_the_check_retries():
    ready = modelstatus.succeeded(
        None,
        generation=3,
        build_key="k",
        version="1",
        repository="r/x",
        index_digest="sha256:" + "a" * 64,
        images=[],
        now="T",
    )
    store = Store()
    with pytest.raises(kopf.TemporaryError), _pass(store, ready):
        raise FailureError(Reason.REGISTRY_ERROR, "connection refused", permanent=False)
    assert store.condition("Ready")["status"] == "True"
    assert store.condition("Ready")["reason"] == Reason.CHECK_RETRYING
    assert "connection refused" in store.condition("Ready")["message"]
    assert store.condition("Built")["status"] == "True"
    # The next good check clears it.
    observed = InferenceModelStatus.model_validate(store.status)
    with _pass(store, observed) as p:
        p.status = modelstatus.up_to_date(p.status, generation=p.generation)
    assert store.condition("Ready")["reason"] == Reason.RECONCILED


def test_keyboard_interrupt_is_not_mapped():
    store = Store()
    with pytest.raises(KeyboardInterrupt), _pass(store):
        raise KeyboardInterrupt
    assert store.status is None


def test_object_locks_let_a_timer_skip_a_busy_object():
    locks = ObjectLocks()
    with locks.hold("ns", "m") as first:
        assert first
        with locks.hold("ns", "m", wait=False) as second:
            assert not second
        with locks.hold("ns", "other", wait=False) as other:
            assert other
    with locks.hold("ns", "m", wait=False) as again:
        assert again


def test_a_failing_on_failure_still_writes_a_truthful_status():
    store = Store()
    built = modelstatus.building(None, generation=3, build_key="k")

    def broken(status, *, generation, failure):
        raise AttributeError("status function bug")

    with (
        pytest.raises(kopf.TemporaryError, match="status function bug"),
        Pass(REF, built, write=store.write, on_failure=broken, event=lambda *_: None),
    ):
        raise FailureError(Reason.SOURCE_DIGEST_MISMATCH, "sha256 differs", permanent=True)
    ready, reconciling = store.condition("Ready"), store.condition("Reconciling")
    assert (ready["status"], ready["reason"]) == ("False", Reason.INTERNAL_ERROR)
    assert "sha256 differs" in ready["message"]
    assert "AttributeError" in ready["message"]
    assert (reconciling["status"], reconciling["observedGeneration"]) == ("True", 3)
    assert store.condition("Stalled")["status"] == "False"


def test_a_malformed_body_is_written_as_invalid_spec_not_raised_before_the_pass(tmp_path):
    world = model_builds.World(tmp_path)
    try:
        url, sha = world.weights("m", 1024)
        body = world.body("m", url, sha)
        body["metadata"]["generation"] = "seven"  # not an integer: of_body used to raise
        body["status"] = ["not", "an", "object"]  # strip_runtime_fields used to raise
        world.reconcile(body)  # permanent: recorded, kopf is not asked to retry
        stalled = world.objects.condition("ns", "m", "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", Reason.INVALID_SPEC)
        assert "generation" in stalled["message"]
        assert world.objects.condition("ns", "m", "Ready")["status"] == "False"
    finally:
        world.close()
