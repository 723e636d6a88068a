"""Every injected fault ends an InferenceModel pass with the right condition, reason and
Stalled/Reconciling — never "building" — and concurrent builds count their own bytes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import httpx
import kopf
import pytest

from edgefleet.api.conditions import Reason
from edgefleet.api.inferencemodel import InferenceModelSpec
from edgefleet.clients.wheels import WheelFetchError
from edgefleet.domain import modelimage, oci, signing
from edgefleet.domain.runtime_lock import LockError
from tests.unit import model_builds
from tests.unit.model_builds import World


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    """A fresh world (fake registry, builder, reconciler), its clients closed after."""
    made = World(tmp_path)
    try:
        yield made
    finally:
        made.close()


def _wheels_fail(platform, _cache):
    raise WheelFetchError(f"pip download for {platform} failed (exit 1): no route to host")


def _lock_fails(platform, _cache):
    raise LockError(f"lock has no wheels for onnxruntime on {platform}")


def _corrupt_index_signature(world: World) -> None:
    # A first build succeeds; then the index's signature manifest is damaged.
    url, sha = world.weights("m", 4096)
    world.reconcile(world.body("m", url, sha))
    index = world.objects.status[("ns", "m")]["indexDigest"]
    store = world.fake.manifests["edgefleet/models/ns/m"]
    damaged = (b'{"schemaVersion": 2}', oci.OCI_MANIFEST)
    store[signing.signature_tag(index)] = store[oci.sha256_digest(damaged[0])] = damaged
    world.objects.status.clear()


def _corrupt_base_index(world: World) -> None:
    world.fake.manifests["edgefleet/base"]["bookworm"] = (b"[1, 2]", oci.OCI_INDEX)


# id, setup (runtime seam, registry faults, world mutation), reason, permanent
FAULTS = [
    ("wheel-fetch-fails", _wheels_fail, [], None, Reason.RUNTIME_UNAVAILABLE, False),
    ("lock-fails", _lock_fails, [], None, Reason.BUILD_FAILED, True),
    ("signature-corrupt", None, [], _corrupt_index_signature, Reason.SIGNING_FAILED, True),
    (
        "registry-401",
        None,
        [model_builds.status_error(401, "UNAUTHORIZED")],
        None,
        Reason.REGISTRY_ACCESS_DENIED,
        True,
    ),
    (
        "registry-403",
        None,
        [model_builds.status_error(403, "DENIED")],
        None,
        Reason.REGISTRY_ACCESS_DENIED,
        True,
    ),
    (
        "registry-404",
        None,
        [model_builds.status_error(404, "NAME_UNKNOWN")],
        None,
        Reason.REGISTRY_ERROR,
        False,
    ),
    (
        "registry-500",
        None,
        [model_builds.status_error(500, "UNKNOWN")],
        None,
        Reason.REGISTRY_ERROR,
        False,
    ),
    ("registry-timeout", None, [model_builds.timeout], None, Reason.REGISTRY_ERROR, False),
    ("digest-mismatch", None, [], "lie", Reason.REGISTRY_ERROR, True),
    ("invalid-registry-body", None, [], _corrupt_base_index, Reason.INVALID_CONTENT, True),
    ("invalid-object-body", None, [], "invalid-body", Reason.INVALID_SPEC, True),
]


@pytest.mark.parametrize(
    ("entries", "faults", "setup", "reason", "permanent"),
    [f[1:] for f in FAULTS],
    ids=[f[0] for f in FAULTS],
)
def test_fault_ends_in_a_typed_condition(tmp_path, entries, faults, setup, reason, permanent):
    with contextlib.closing(World(tmp_path, **({"entries": entries} if entries else {}))) as world:
        if callable(setup):
            setup(world)
        url, sha = world.weights("m", 4096)
        body = world.body("m", url, sha)
        if setup == "lie":
            world.fake.lie_about_digest = True
        if setup == "invalid-body":
            body["spec"]["platforms"] = ["linux/riscv64"]
        world.faults.extend(faults)
        if permanent:
            world.reconcile(body)  # recorded; kopf is not asked to retry
        else:
            with pytest.raises(kopf.TemporaryError):
                world.reconcile(body)
        built = world.objects.condition("ns", "m", "Built")
        stalled = world.objects.condition("ns", "m", "Stalled")
        reconciling = world.objects.condition("ns", "m", "Reconciling")
        ready = world.objects.condition("ns", "m", "Ready")
        assert (built["status"], built["reason"]) == ("False", reason), built
        assert built["message"]
        assert stalled["status"] == ("True" if permanent else "False")
        assert reconciling["status"] == ("False" if permanent else "True")
        assert Reason.BUILDING not in (reconciling["reason"], stalled["reason"], ready["reason"])
        assert ready["status"] != "True"
        assert ("Warning", reason) in {(e[0], e[1]) for e in world.events}


def test_a_fault_cleared_recovers_on_the_next_pass(world):
    url, sha = world.weights("m", 4096)
    world.faults.append(model_builds.status_error(503, "UNAVAILABLE"))
    with pytest.raises(kopf.TemporaryError):
        world.reconcile(world.body("m", url, sha))
    world.faults.clear()
    world.reconcile(world.body("m", url, sha), retry=1)
    assert world.objects.condition("ns", "m", "Ready")["status"] == "True"
    assert world.objects.condition("ns", "m", "Built")["reason"] == Reason.BUILD_SUCCEEDED


def test_two_concurrent_builds_report_their_own_byte_counts(world):
    both_downloading = threading.Barrier(2, timeout=5)
    # Shared layers (base, runtime) are in place first, so each build sends only
    # what is its own.
    url, sha = world.weights("warm", 1024)
    world.reconcile(world.body("warm", url, sha))
    world.on_download = both_downloading.wait
    small, big = world.weights("small", 64 * 1024), world.weights("big", 2 * 1024 * 1024)
    results = {}
    before = world.registry.snapshot()

    def build(name, source):
        model_spec = InferenceModelSpec.model_validate(world.body(name, *source)["spec"])
        results[name] = world.builder.build("ns", name, model_spec)

    threads = [
        threading.Thread(target=build, args=("small", small)),
        threading.Thread(target=build, args=("big", big)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=8)
    assert set(results) == {"small", "big"}, "both builds finished"
    total = world.registry.snapshot().bytes_uploaded - before.bytes_uploaded
    small_r, big_r = results["small"], results["big"]
    assert small_r.bytes_uploaded + big_r.bytes_uploaded == total
    assert small_r.bytes_uploaded < 100 * 1024 < 2 * 1024 * 1024 < big_r.bytes_uploaded
    small_layer = modelimage.model_layer(world.files["/small.onnx"]).blob
    big_layer = modelimage.model_layer(world.files["/big.onnx"]).blob
    assert small_layer.digest in small_r.blobs_uploaded
    assert small_layer.digest not in big_r.blobs_uploaded
    assert big_layer.digest in big_r.blobs_uploaded
    assert big_layer.digest not in small_r.blobs_uploaded
    assert small_r.bytes_uploaded >= small_layer.size


def test_the_drift_timer_rebuilds_an_image_deleted_from_the_registry(world):
    url, sha = world.weights("m", 4096)
    world.reconcile(world.body("m", url, sha))
    status = world.objects.status[("ns", "m")]
    store = world.fake.manifests["edgefleet/models/ns/m"]
    del store[status["indexDigest"]]
    world.reconcile(world.body("m", url, sha), drift_check=True)
    assert status["indexDigest"] in store
    assert ("Warning", Reason.DRIFT_DETECTED) in {(e[0], e[1]) for e in world.events}
    assert world.objects.condition("ns", "m", "Ready")["status"] == "True"


def test_the_drift_timer_keeps_a_built_model_ready_during_a_registry_outage(world):
    url, sha = world.weights("m", 4096)
    world.reconcile(world.body("m", url, sha))
    world.faults.append(lambda r: httpx.Response(503))
    with pytest.raises(kopf.TemporaryError):  # the timer waits for its next tick
        world.reconcile(world.body("m", url, sha), drift_check=True)
    ready = world.objects.condition("ns", "m", "Ready")
    assert (ready["status"], ready["reason"]) == ("True", Reason.CHECK_RETRYING)
    assert world.objects.condition("ns", "m", "Built")["status"] == "True"


def test_the_drift_timer_rebuilds_on_a_base_image_that_moved(world):
    url, sha = world.weights("m", 4096)
    world.reconcile(world.body("m", url, sha))
    before = world.objects.status[("ns", "m")]["indexDigest"]
    world.reconcile(world.body("m", url, sha), drift_check=True)
    assert world.objects.status[("ns", "m")]["indexDigest"] == before, "nothing moved"
    model_builds.push_base(world.registry, os_release=b"ID=debian\nVERSION_ID=12.9\n")
    world.reconcile(world.body("m", url, sha), drift_check=True)
    status = world.objects.status[("ns", "m")]
    assert status["indexDigest"] != before
    assert [h["indexDigest"] for h in status["history"]][1] == before
    assert world.objects.condition("ns", "m", "Ready")["status"] == "True"


def test_access_denied_while_checking_a_built_model_stalls_but_keeps_built(world):
    url, sha = world.weights("m", 4096)
    world.reconcile(world.body("m", url, sha))
    world.faults.append(lambda r: httpx.Response(403))
    world.reconcile(world.body("m", url, sha))  # a resume after a credentials change
    conds = {t: world.objects.condition("ns", "m", t) for t in ("Built", "Stalled", "Ready")}
    assert conds["Built"]["status"] == "True"
    assert (conds["Stalled"]["status"], conds["Stalled"]["reason"]) == (
        "True",
        Reason.REGISTRY_ACCESS_DENIED,
    )
    assert conds["Ready"]["status"] == "False"
    world.faults.clear()
    world.reconcile(world.body("m", url, sha))
    assert world.objects.condition("ns", "m", "Ready")["status"] == "True"


def test_the_drift_timer_re_signs_when_a_signature_is_deleted(world):
    url, sha = world.weights("m", 4096)
    world.reconcile(world.body("m", url, sha))
    status = world.objects.status[("ns", "m")]
    store = world.fake.manifests["edgefleet/models/ns/m"]
    platform_digest = status["images"][0]["digest"]
    tag = signing.signature_tag(platform_digest)
    del store[tag]
    before = len(world.fake.requests)
    world.reconcile(world.body("m", url, sha), drift_check=True)
    assert tag in store, "the signature is back"
    drift = [e for e in world.events if e[1] == Reason.DRIFT_DETECTED]
    assert drift
    assert "signature" in drift[-1][2]
    new = world.fake.requests[before:]
    puts = [r.url.path for r in new if r.method == "PUT" and "/manifests/" in r.url.path]
    assert puts == [f"/v2/edgefleet/models/ns/m/manifests/{tag}"], "only the signature"
    assert not [r for r in new if r.method == "PATCH"], "no blob uploaded again"
    assert world.objects.status[("ns", "m")]["indexDigest"] == status["indexDigest"]
    assert world.objects.condition("ns", "m", "Ready")["status"] == "True"


def test_the_drift_timer_rebuilds_when_a_layer_blob_is_deleted(world):
    url, sha = world.weights("m", 4096)
    world.reconcile(world.body("m", url, sha))
    repo = "edgefleet/models/ns/m"
    digest = world.objects.status[("ns", "m")]["images"][0]["digest"]
    data, media_type = world.fake.manifests[repo][digest]
    layer = oci.parse_manifest(data, media_type).layers[-1].digest
    removed = world.fake.blobs[repo].pop(layer)  # as a registry GC or a hand would
    world.reconcile(world.body("m", url, sha), drift_check=True)  # nothing else changed
    drift = [e for e in world.events if e[1] == Reason.DRIFT_DETECTED]
    assert drift
    assert layer in drift[-1][2]
    assert world.fake.blobs[repo].get(layer) == removed, "the blob is pushed again"
    assert world.objects.condition("ns", "m", "Ready")["status"] == "True"
    world.events.clear()
    world.reconcile(world.body("m", url, sha), drift_check=True)
    assert not [e for e in world.events if e[1] == Reason.DRIFT_DETECTED], "repaired"
