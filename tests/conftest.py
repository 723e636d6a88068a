"""Fixtures shared by every tier: a real control plane, CRDs, a namespace per test, an
OCI registry with the multi-arch base images, a Docker engine, a model file server.

Unit tests (tests/unit) never touch them. Integration and e2e tests get services
started here on loopback and always torn down, also when a test fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgefleet.clients import baseimage
from edgefleet.clients.imagebuilder import BuilderSettings, ImageBuilder
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import signing
from edgefleet.testing import engine
from edgefleet.testing import registry as registry_harness
from edgefleet.testing.controlplane import ControlPlane
from edgefleet.testing.files import file_server

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION_TIMEOUT = 300  # seconds per test, fixture start-up included


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        # tests/cluster/ runs pods on the one-node cluster: e2e too.
        tier = {"integration": "integration", "e2e": "e2e", "cluster": "e2e"}.get(path.parent.name)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(INTEGRATION_TIMEOUT))


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager for the whole session."""
    with ControlPlane() as cp:
        yield cp


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with edgefleet's CRDs installed and Established."""
    control_plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds")
    )
    return control_plane


@pytest.fixture
def namespace(crds: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    crds.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


# -- registry, base images, engine, model files, builder ---------------------------

BASE_REPO, BASE_TAG = "edgefleet/base", "bookworm"
BASE_ARCHES = ("amd64", "arm64")

docker_engine = pytest.fixture(engine.docker_engine_fixture, name="docker_engine", scope="session")
registry = pytest.fixture(registry_harness.registry_fixture, name="registry", scope="session")


@pytest.fixture(scope="session")
def registry_client(registry) -> Iterator[RegistryClient]:
    with RegistryClient(registry.url, ca_bundle=registry.ca_path) as client:
        yield client


@pytest.fixture(scope="session")
def base_index(registry_client) -> str:
    """The multi-arch Debian base index, built from cached rootfs tarballs."""
    return baseimage.push_base_index(registry_client, BASE_REPO, BASE_ARCHES, tag=BASE_TAG)


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """A plain HTTP file server on 127.0.0.1 for model weights: (directory, base URL)."""
    directory = tmp_path_factory.mktemp("models")
    with file_server(directory) as url:
        yield directory, url


@pytest.fixture(scope="session")
def signing_key():
    return signing.generate_key()


@pytest.fixture(scope="session")
def builder_cache(tmp_path_factory) -> Path:
    # Wheels and runtime layers are cached across runs outside the repo, like the tools.
    cache = Path.home() / ".cache" / "edgefleet" / "test-builder"
    cache.mkdir(parents=True, exist_ok=True)
    return cache


@pytest.fixture
def builder(
    registry_client, base_index, signing_key, builder_cache, tmp_path
) -> Iterator[ImageBuilder]:
    settings = BuilderSettings(
        cache_dir=builder_cache, base_repository=BASE_REPO, base_reference=BASE_TAG
    )
    with httpx.Client(timeout=30) as http:
        yield ImageBuilder(registry_client, signing_key, settings, http=http)
