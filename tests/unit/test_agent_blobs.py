"""Blob downloads through the gateway: resume, digests, size bounds, stalls."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet_node.agent import identity, pull, store
from edgefleet_node.agent.blobs import Downloaded, DownloadError, fetch_blob
from edgefleet_node.agent.client import GatewayClient
from edgefleet_node.agent.clock import Clock
from edgefleet_node.oci.types import Descriptor
from tests.unit.agent_gateway_fake import FakeGateway, Image
from tests.unit.agent_helpers import enrolled

MB = 1024 * 1024


@pytest.fixture
def setup(gw: FakeGateway, tmp_path: Path) -> tuple[store.StateDir, GatewayClient, Image]:
    state = enrolled(gw, tmp_path / "state")
    ident = identity.load(state)
    client = GatewayClient(ident.gateway, ident.ca_pem, ident.client_pem, Clock())
    image = gw.add_image("edgefleet/models/fleet/m", [2 * MB, 1 * MB])
    return state, client, image


def _desc(image: Image, i: int = 0) -> Descriptor:
    return image.layers[i].descriptor()


def test_a_blob_lands_under_its_digest_and_nothing_else(gw, setup) -> None:
    state, client, image = setup
    stats = Downloaded()
    path = fetch_blob(client, image.repository, _desc(image), state, stats=stats)
    assert path.read_bytes() == image.layers[0].data
    assert stats.received == image.layers[0].size
    assert sorted(p.name for p in state.blobs.iterdir()) == [path.name]


def test_an_interrupted_download_resumes_without_fetching_bytes_twice(gw, setup) -> None:
    state, client, image = setup
    desc = _desc(image)
    gw.faults.truncate_once[desc.digest] = 700_000
    with pytest.raises(DownloadError) as failed:
        fetch_blob(client, image.repository, desc, state)
    assert failed.value.transient
    partial = state.blob(desc.digest).with_name(desc.digest[7:] + ".partial")
    assert partial.stat().st_size == 700_000
    stats = Downloaded()
    path = fetch_blob(client, image.repository, desc, state, stats=stats)
    assert path.read_bytes() == image.layers[0].data
    assert stats.resumed_from == 700_000
    assert gw.blob_bytes_sent[desc.digest] == desc.size  # every byte crossed once
    assert not partial.exists()


def test_a_corrupted_blob_is_refused_and_discarded(gw, setup) -> None:
    state, client, image = setup
    desc = _desc(image)
    gw.faults.corrupt.add(desc.digest)
    with pytest.raises(DownloadError) as failed:
        fetch_blob(client, image.repository, desc, state)
    assert failed.value.reason == "BlobDigestMismatch"
    assert not failed.value.transient
    assert list(state.blobs.iterdir()) == []


def test_a_corrupt_partial_from_before_is_replaced_by_a_fresh_download(gw, setup) -> None:
    state, client, image = setup
    desc = _desc(image)
    partial = state.blob(desc.digest).with_name(desc.digest[7:] + ".partial")
    partial.write_bytes(b"\0" * 1000)  # e.g. zeros after a power cut
    path = fetch_blob(client, image.repository, desc, state)
    assert path.read_bytes() == image.layers[0].data


def test_an_endless_stream_is_cut_at_the_declared_size(gw, setup) -> None:
    state, client, image = setup
    desc = _desc(image, 1)
    gw.faults.endless.add(desc.digest)
    stats = Downloaded()
    path = fetch_blob(client, image.repository, desc, state, stats=stats)
    assert stats.received == desc.size
    assert path.stat().st_size == desc.size


def test_an_endless_stream_of_wrong_bytes_is_refused(gw, setup) -> None:
    state, client, image = setup
    desc = _desc(image, 1)
    gw.faults.endless.add(desc.digest)
    gw.faults.corrupt.add(desc.digest)
    stats = Downloaded()
    with pytest.raises(DownloadError, match="other content"):
        fetch_blob(client, image.repository, desc, state, stats=stats)
    assert stats.received == desc.size


def test_a_response_declaring_more_than_the_descriptor_is_refused(gw, setup) -> None:
    state, client, image = setup
    desc = _desc(image, 1)
    gw.faults.declare_more.add(desc.digest)
    with pytest.raises(DownloadError) as failed:
        fetch_blob(client, image.repository, desc, state)
    assert failed.value.reason == "BlobTooLarge"
    assert list(state.blobs.iterdir()) == []


def test_a_stalled_transfer_is_aborted_and_kept_for_resume(gw, setup) -> None:
    state, client, image = setup
    desc = _desc(image, 1)
    gw.faults.stall.add(desc.digest)
    with pytest.raises(DownloadError) as failed:
        fetch_blob(client, image.repository, desc, state, stall_timeout=0.5)
    assert failed.value.reason == "DownloadStalled"
    assert failed.value.transient


def test_preflight_refuses_what_cannot_fit(gw, setup) -> None:
    state, client, image = setup
    resolved = pull.resolve(client, image.workload(), [gw_key(gw)])
    need = sum(d.size for d in resolved.blobs)
    with pytest.raises(pull.PullError) as failed:
        pull.preflight([resolved], state, pull.Resources(need + 10, None), reserve=100)
    assert failed.value.reason == "InsufficientDisk"
    with pytest.raises(pull.PullError) as failed:
        pull.preflight([resolved], state, pull.Resources(10 * need, 1000), reserve=0)
    assert failed.value.reason == "InsufficientMemory"
    pull.preflight([resolved], state, pull.Resources(need, None), reserve=0)
    fetch_blob(client, image.repository, _desc(image), state)  # now on disk: not counted
    pull.preflight([resolved], state, pull.Resources(need - image.layers[0].size, None), 0)


def gw_key(gw: FakeGateway) -> bytes:
    from tests.unit.agent_gateway_pki import pub_pem

    return pub_pem(gw.image_key)
