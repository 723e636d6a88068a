"""Our signatures and cosign's, both ways, on a real registry (cosign v3, classic format).

cosign 3 defaults to Sigstore bundles stored as OCI referrers; these flags select the
classic ``sha256-<hex>.sig`` tag format and keep it offline (no transparency log, no
TUF root): ``--tlog-upload=false --use-signing-config=false --new-bundle-format=false``
for ``sign``, ``--insecure-ignore-tlog=true --new-bundle-format=false`` for ``verify``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.signer import sign_and_push
from edgefleet.domain import oci, signing
from edgefleet.testing.registry import LocalRegistry
from edgefleet.testing.tools import find_tools
from edgefleet_node.trust import cosign


@pytest.fixture(scope="module")
def cosign_bin() -> str:
    """The pinned cosign (hack/tools.sh builds it when missing)."""
    return find_tools().cosign


def run_cosign(
    binary: str, registry: LocalRegistry, workdir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),  # no docker config, no TUF cache of the user
        "COSIGN_PASSWORD": "test-password",
        "COSIGN_YES": "true",
    }
    return subprocess.run(
        [binary, *args, "--registry-cacert", str(registry.ca_path)]
        if args[0] in ("sign", "verify")
        else [binary, *args],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def pushed_image(client: RegistryClient, repo: str) -> str:
    config = oci.image_config(oci.Platform.parse("linux/amd64"), [])
    client.push_blob(repo, config)
    manifest = oci.image_manifest(config, [], {"test": uuid.uuid4().hex})
    return client.put_manifest(repo, "v1", manifest)


def test_cosign_and_edgefleet_accept_each_others_signatures(
    cosign_bin: str, registry: LocalRegistry, tmp_path: Path
) -> None:
    repo = f"interop/{uuid.uuid4().hex[:10]}"
    with RegistryClient(registry.url, ca_bundle=registry.ca_path) as client:
        digest = pushed_image(client, repo)
        reference = f"{registry.host}/{repo}@{digest}"

        ours = signing.generate_key()
        (tmp_path / "ours.pub").write_bytes(signing.public_key_pem(ours))
        sign_and_push(client, repo, digest, ours)
        verified = run_cosign(
            cosign_bin,
            registry,
            tmp_path,
            "verify",
            "--key",
            "ours.pub",
            "--insecure-ignore-tlog=true",
            "--new-bundle-format=false",
            reference,
        )
        assert verified.returncode == 0, verified.stderr
        assert "TUF" not in verified.stderr  # stayed offline
        (tmp_path / "stranger.pub").write_bytes(signing.public_key_pem(signing.generate_key()))
        refused = run_cosign(
            cosign_bin,
            registry,
            tmp_path,
            "verify",
            "--key",
            "stranger.pub",
            "--insecure-ignore-tlog=true",
            "--new-bundle-format=false",
            reference,
        )
        assert refused.returncode != 0

        generated = run_cosign(cosign_bin, registry, tmp_path, "generate-key-pair")
        assert generated.returncode == 0, generated.stderr
        signed = run_cosign(
            cosign_bin,
            registry,
            tmp_path,
            "sign",
            "--key",
            "cosign.key",
            "--tlog-upload=false",
            "--use-signing-config=false",
            "--new-bundle-format=false",
            reference,
        )
        assert signed.returncode == 0, signed.stderr

        body, _, _ = client.get_manifest(repo, signing.signature_tag(digest))
        layers = cosign.parse_signature_manifest(body)
        assert len(layers) == 2  # cosign appended to the manifest we wrote
        # our serialisation of the same layers is byte-for-byte cosign's, config included
        rebuilt = signing.signature_image(signing.signature_layers(body))
        assert rebuilt.manifest.data == body
        assert client.get_blob(repo, rebuilt.config.digest) == rebuilt.config.data
        payloads = {layer.digest: client.get_blob(repo, layer.digest) for layer in layers}
        theirs = (tmp_path / "cosign.pub").read_bytes()
        for public_key in (theirs, signing.public_key_pem(ours)):
            result = cosign.verify_signatures(
                body, payloads, digest, public_key, f"{registry.host}/{repo}"
            )
            assert result.payload.manifest_digest == digest

        # and our signer, run again, sees its own signature among cosign's and adds nothing
        again = sign_and_push(client, repo, digest, ours)
        assert not again.appended
        assert again.signatures == 2
