"""The agent against the real gateway, API server and TLS registry when the registry serves
a bad image (signed by a foreign key, a signature for another digest, a blob corrupted on
the registry's disk): the update fails with a reason and nothing changes on the device."""

from __future__ import annotations

import pytest

from edgefleet.testing.procs import wait_until
from edgefleet.testing.tinyimage import PushedImage, push_image
from edgefleet_node.agent.simulated import SimulatedRuntime
from tests.integration.agent_fixtures import (
    PLATFORM,
    Running,
    enrol,
    set_desired,
)


def _forge_signature(registry_client, image: PushedImage, key, claim: str) -> None:
    """Replace the platform manifest's signature with a valid one of ``claim``."""
    from edgefleet.domain import oci, signing

    digest = image.manifests[PLATFORM]
    payload = signing.build_payload(f"{registry_client.host}/{image.repository}", claim)
    layer = signing.signature_layer(payload, signing.sign_payload(key, payload))
    sig = signing.signature_image([layer])
    registry_client.push_blob(image.repository, oci.Blob(payload, layer.media_type))
    registry_client.push_blob(image.repository, sig.config)
    registry_client.put_manifest(image.repository, signing.signature_tag(digest), sig.manifest)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("foreign-key", "SignatureInvalid"),
        ("signed-other-digest", "SignatureInvalid"),
        ("corrupt-on-registry-disk", "BlobDigestMismatch"),
    ],
)
def test_a_bad_image_from_the_registry_changes_nothing(
    agent_fleet,
    agent_gateway,
    registry,
    registry_client,
    image_signing_key,
    tmp_path,
    fault,
    reason,
) -> None:
    from edgefleet.domain import signing

    repo = f"edgefleet/models/{agent_fleet.namespace}/cam"
    good = push_image(registry_client, repo, image_signing_key, platforms=(PLATFORM,), text="good")
    key = signing.generate_key() if fault == "foreign-key" else image_signing_key
    bad = push_image(
        registry_client, repo, key, platforms=(PLATFORM,), text="bad", big_layer_bytes=1024 * 1024
    )
    if fault == "signed-other-digest":
        _forge_signature(registry_client, bad, image_signing_key, claim=good.manifests[PLATFORM])
    elif fault == "corrupt-on-registry-disk":
        hexd = (bad.big_layer or "")[7:]
        data = registry.storage_dir / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    state = enrol(agent_fleet, "dev-6", f"https://127.0.0.1:{agent_gateway.port}", tmp_path / "s")
    set_desired(agent_fleet, "dev-6", 1, good, "cam", "1")
    rt = SimulatedRuntime()
    with Running(state, rt):
        agent_fleet.wait_condition("dev-6", "Ready", "True", timeout=60)
        set_desired(agent_fleet, "dev-6", 2, bad, "cam", "2")
        wait_until(
            lambda: (agent_fleet.condition("dev-6", "UpdateFailed") or {}).get("reason") == reason,
            timeout=60,
            what=f"UpdateFailed {reason}",
        )
        assert [i.manifest_digest for i in rt.running()] == [good.manifests[PLATFORM]]
        assert not any(i.manifest_digest == bad.manifests[PLATFORM] for i in rt.started)
    assert not state.blob(bad.big_layer or "").exists()
