"""`edgefleet image build-base`, the command users run to put the base index into their
registry: from the cached root filesystems it pushes the same index, byte for byte, as
the one every test builds on (the build is reproducible), and the registry serves it
with one manifest per platform."""

from __future__ import annotations

import json
import subprocess
import sys

from edgefleet.domain import oci
from tests.conftest import BASE_ARCHES


def test_build_base_pushes_the_reproducible_index(registry, registry_client, base_index):
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from edgefleet.cli import main; sys.exit(main())",
         "image", "build-base", "--registry", registry.url, "--registry-ca",
         str(registry.ca_path), "--repository", "edgefleet/base-cli", "--tag", "cli",
         *[a for arch in BASE_ARCHES for a in ("--arch", arch)]],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["index"] == base_index
    assert result["platforms"] == [f"linux/{arch}" for arch in BASE_ARCHES]
    data, media_type, digest = registry_client.get_manifest("edgefleet/base-cli", "cli")
    assert digest == base_index
    index = oci.parse_index(data, media_type, digest)
    assert sorted(str(m.platform) for m in index.manifests) == sorted(result["platforms"])
