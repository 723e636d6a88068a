"""Which digests a device may pull, from its EdgeDevice and the manifests (a fake
registry of real OCI documents): index -> its platform's manifest -> config + layers,
plus signature manifests and their layers; manifests cached by digest; signature tags
only briefly; one fetch per key under concurrency; registry failures never widen."""

from __future__ import annotations

import asyncio

import pytest

from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.clients.registry_errors import RegistryError
from edgefleet.clients.registry_stream import Manifest
from edgefleet.domain import oci, signing
from edgefleet.gateway.oci_reach import Assignment, Reachability, assignments

REPO = "edgefleet/models/plant/cam"


class FakeRegistry:
    """Manifests by (repo, reference), counting fetches."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], Manifest] = {}
        self.fetches: list[tuple[str, str]] = []
        self.fail = False

    def put(self, repo: str, reference: str, blob: oci.Blob) -> str:
        self.docs[(repo, reference)] = Manifest(blob.digest, blob.media_type, blob.data)
        self.docs[(repo, blob.digest)] = self.docs[(repo, reference)]
        return blob.digest

    async def fetch(self, repo: str, reference: str) -> Manifest | None:
        self.fetches.append((repo, reference))
        await asyncio.sleep(0)
        if self.fail:
            raise RegistryError("registry down", code="TRANSPORT", operation="GET")
        return self.docs.get((repo, reference))


def _image(reg: FakeRegistry, repo: str = REPO):
    key = signing.generate_key()
    found: dict[str, set[str]] = {}
    entries = []
    for name in ("linux/amd64", "linux/arm64"):
        layer = oci.build_layer([oci.FileEntry.file("f", name.encode())])
        config = oci.image_config(oci.Platform.parse(name), [layer.diff_id])
        manifest = oci.image_manifest(config, [layer])
        reg.put(repo, manifest.digest, manifest)
        found[name] = {manifest.digest, config.digest, layer.blob.digest}
        entries.append((manifest.descriptor(), oci.Platform.parse(name)))
    index = oci.image_index(entries)
    reg.put(repo, index.digest, index)
    sig_payload = signing.build_payload(f"r/{repo}", index.digest)
    sig_layer = signing.signature_layer(sig_payload, signing.sign_payload(key, sig_payload))
    sig = signing.signature_image([sig_layer])
    reg.put(repo, signing.signature_tag(index.digest), sig.manifest)
    signature = {sig.manifest.digest, sig.config.digest, sig_layer.digest}
    return index.digest, found, signature


def test_reachable_digests_are_exactly_the_platform_chain_and_signatures():
    reg = FakeRegistry()
    index, found, signature = _image(reg)
    reach = Reachability(reg.fetch)
    allowed = asyncio.run(reach.allowed([Assignment(REPO, (index,), "linux/arm64")]))
    assert allowed == {REPO: frozenset({index, *found["linux/arm64"], *signature})}
    assert not found["linux/amd64"] & allowed[REPO]


def test_manifests_are_cached_and_answers_expire():
    reg = FakeRegistry()
    index, _, _ = _image(reg)
    clock = [0.0]
    reach = Reachability(reg.fetch, ttl=30, clock=lambda: clock[0])
    assigned = [Assignment(REPO, (index,), "linux/amd64")]
    asyncio.run(reach.allowed(assigned))
    first = len(reg.fetches)
    asyncio.run(reach.allowed(assigned))
    assert len(reg.fetches) == first  # the answer itself is cached
    clock[0] = 31
    asyncio.run(reach.allowed(assigned))
    refetched = reg.fetches[first:]
    assert all(ref.endswith(".sig") for _, ref in refetched)  # manifests by digest stay
    assert refetched


def test_concurrent_askers_share_one_fetch():
    reg = FakeRegistry()
    index, _, _ = _image(reg)
    reach = Reachability(reg.fetch)

    async def many() -> None:
        await asyncio.gather(*(reach.manifest(REPO, index) for _ in range(20)))

    asyncio.run(many())
    assert reg.fetches.count((REPO, index)) == 1


def test_a_cancelled_fetch_does_not_fail_the_others():
    reg = FakeRegistry()
    index, _, _ = _image(reg)
    gate = asyncio.Event()
    plain = reg.fetch

    async def slow(repo: str, reference: str) -> Manifest | None:
        await gate.wait()
        return await plain(repo, reference)

    reach = Reachability(slow)

    async def scenario() -> Manifest | None:
        first = asyncio.create_task(reach.manifest(REPO, index))  # fetches
        await asyncio.sleep(0)
        second = asyncio.create_task(reach.manifest(REPO, index))  # waits on the first
        await asyncio.sleep(0)
        first.cancel()  # its device hung up
        await asyncio.sleep(0)
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    found = asyncio.run(scenario())
    assert found is not None
    assert found.digest == index


def test_registry_failures_allow_only_what_was_named():
    reg = FakeRegistry()
    index, _, _ = _image(reg)
    reg.fail = True
    reach = Reachability(reg.fetch)
    allowed = asyncio.run(reach.allowed([Assignment(REPO, (index,), "linux/amd64")]))
    assert allowed == {REPO: frozenset({index})}


def test_lru_is_bounded():
    reg = FakeRegistry()
    digests = [_image(reg, f"r/{i}")[0] for i in range(3)]
    reach = Reachability(reg.fetch, max_manifests=2)
    for i, digest in enumerate(digests):
        asyncio.run(reach.manifest(f"r/{i}", digest))
    reg.fetches.clear()
    asyncio.run(reach.manifest("r/0", digests[0]))
    assert reg.fetches == [("r/0", digests[0])]


def _digest(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64


@pytest.mark.parametrize("status", [None, {}])
def test_assignments_of_a_device_without_workloads(status):
    device = EdgeDevice.model_validate(
        {
            "metadata": {"name": "cam-1", "namespace": "plant"},
            "spec": {"platform": "linux/arm64"},
            "status": status,
        }
    )
    assert assignments(device) == ()


def test_assignments_cover_desired_rollback_and_running():
    desired = {
        "model": "m",
        "version": "2",
        "repository": REPO,
        "indexDigest": _digest(1),
        "imageDigest": _digest(2),
    }
    previous = {
        "model": "m",
        "rollout": "r",
        "workload": {
            **desired,
            "version": "1",
            "indexDigest": _digest(3),
            "imageDigest": _digest(4),
        },
    }
    device = EdgeDevice.model_validate(
        {
            "metadata": {"name": "cam-1", "namespace": "plant"},
            "spec": {"platform": "linux/arm64"},
            "status": {
                "desired": [desired],
                "previous": [previous],
                "current": [
                    {"model": "m", "version": "0", "imageDigest": _digest(5)},
                    {"model": "gone", "version": "0", "imageDigest": _digest(6)},
                ],
            },
        }
    )
    got = assignments(device)
    assert set(got) == {
        Assignment(REPO, (_digest(1), _digest(2)), "linux/arm64"),
        Assignment(REPO, (_digest(3), _digest(4)), "linux/arm64"),
        Assignment(REPO, (_digest(5),), "linux/arm64"),
    }
