"""InferenceModel status transitions: building, succeeded (with history), failed."""

from __future__ import annotations

from edgefleet.api.inferencemodel import BuiltImage
from edgefleet.domain import modelstatus
from edgefleet.domain.conditions import find
from edgefleet.handlers.inferencemodel import RETRY_MAX, retry_delay

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
T = "2026-01-01T00:00:00Z"


def _image(digest: str) -> BuiltImage:
    return BuiltImage(platform="linux/amd64", digest=digest, size_bytes=10)


def _built(status, key: str, digest: str, version: str):
    return modelstatus.succeeded(
        status,
        generation=1,
        build_key=key,
        version=version,
        repository="r",
        index_digest=digest,
        images=[_image(digest)],
        now=T,
    )


def test_success_is_ready_and_current():
    status = _built(None, "k1", D1, "1.0.0")
    assert find(status.conditions, "Ready").status == "True"
    assert modelstatus.is_current(status, "k1")
    assert not modelstatus.is_current(status, "k2")
    assert [h.index_digest for h in status.history] == [D1]


def test_history_keeps_earlier_builds_newest_first_without_duplicates():
    status = _built(None, "k1", D1, "1.0.0")
    status = _built(status, "k2", D2, "1.0.1")
    status = _built(status, "k3", D3, "1.1.0")
    status = _built(status, "k2", D2, "1.0.1")  # rolled back to 1.0.1
    assert [(h.version, h.index_digest) for h in status.history] == [
        ("1.0.1", D2),
        ("1.1.0", D3),
        ("1.0.0", D1),
    ]


def test_history_is_bounded():
    status = None
    for n in range(15):
        status = _built(status, f"k{n}", "sha256:" + f"{n:064x}", f"1.0.{n}")
    assert len(status.history) == modelstatus.HISTORY_LIMIT


def test_permanent_failure_stalls_and_transient_keeps_reconciling():
    building = modelstatus.building(None, generation=2, build_key="k", now=T)
    assert find(building.conditions, "Reconciling").status == "True"
    stalled = modelstatus.failed(
        building,
        generation=2,
        reason="SourceDigestMismatch",
        message="pin is wrong",
        permanent=True,
        now=T,
    )
    assert find(stalled.conditions, "Stalled").status == "True"
    assert find(stalled.conditions, "Ready").reason == "SourceDigestMismatch"
    assert stalled.observed_generation == 2
    retrying = modelstatus.failed(
        building, generation=2, reason="RegistryError", message="503", permanent=False, now=T
    )
    assert find(retrying.conditions, "Reconciling").status == "True"
    assert find(retrying.conditions, "Stalled").status == "False"
    assert retrying.observed_generation is None


def test_transient_build_failures_back_off_exponentially_with_a_cap():
    delays = [retry_delay(n) for n in range(12)]
    assert delays[:4] == [10.0, 20.0, 40.0, 80.0]
    assert delays == sorted(delays)
    assert max(delays) == RETRY_MAX
