"""Shared real services for the integration tier: registry, base images, Docker engine,
a model file server and an image builder. Each is started once per session on
127.0.0.1 and always torn down."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgefleet.clients.imagebuilder import BuilderSettings, ImageBuilder
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import signing
from edgefleet.testing import baseimage, engine, registry as registry_harness

BASE_REPO, BASE_TAG = "edgefleet/base", "bookworm"
BASE_ARCHES = ("amd64", "arm64")

docker_engine = pytest.fixture(engine.docker_engine_fixture, name="docker_engine",
                               scope="session")
registry = pytest.fixture(registry_harness.registry_fixture, name="registry", scope="session")


@pytest.fixture(scope="session")
def registry_client(registry) -> Iterator[RegistryClient]:
    with RegistryClient(registry.url, ca_bundle=registry.ca_path) as client:
        yield client


@pytest.fixture(scope="session")
def base_index(registry_client) -> str:
    """The multi-arch Debian base index, built from cached rootfs tarballs."""
    return baseimage.push_base_index(registry_client, BASE_REPO, BASE_ARCHES, tag=BASE_TAG)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """A plain HTTP file server on 127.0.0.1 for model weights: (directory, base URL)."""
    directory = tmp_path_factory.mktemp("models")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield directory, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


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
def builder(registry_client, base_index, signing_key, builder_cache, tmp_path) -> Iterator[ImageBuilder]:
    settings = BuilderSettings(cache_dir=builder_cache, base_repository=BASE_REPO,
                               base_reference=BASE_TAG)
    with httpx.Client(timeout=30) as http:
        yield ImageBuilder(registry_client, signing_key, settings, http=http)
