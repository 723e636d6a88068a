"""App and registry image builds that share one registry client count their own bytes.

Both builds push their platform image, then wait for each other (the progress
callback is the meeting point) before they push their index: each build's lifetime
then spans the other's uploads, so a build that diffed the shared client's counters
would report the other's bytes too.
"""

from __future__ import annotations

import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.clients import registryimage as registry_builder
from edgefleet.clients.appbuilder import AppBuildResult, AppImageBuilder
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import appimage, registryimage, signing
from tests.unit.model_builds import push_base
from tests.unit.registry_fake import BASE, FakeRegistry


@pytest.fixture
def registry():
    fake = FakeRegistry()
    client = RegistryClient(BASE, transport=httpx.MockTransport(fake.handle), sleep=lambda _s: None)
    push_base(client)
    try:
        yield client
    finally:
        client.close()


def _run_side_by_side(
    registry: RegistryClient, build: Callable[[str, Callable[[str], None]], AppBuildResult]
) -> dict[str, AppBuildResult]:
    """Run ``build("a", say)`` and ``build("b", say)`` at once; each says after its
    platform image is pushed and waits there for the other."""
    met = threading.Barrier(2, timeout=5)
    waited: set[str] = set()
    results: dict[str, AppBuildResult] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        def say(message: str) -> None:
            if name not in waited and "linux/amd64" in message:
                waited.add(name)
                met.wait()

        try:
            results[name] = build(name, say)
        except BaseException as exc:  # reported below, with the thread's own error
            errors.append(exc)

    before = registry.snapshot().bytes_uploaded
    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=8)
    assert not errors, errors
    assert set(results) == {"a", "b"}, "both builds finished"
    total = registry.snapshot().bytes_uploaded - before
    a, b = results["a"].bytes_uploaded, results["b"].bytes_uploaded
    assert 0 < a < total, (a, b, total)
    assert 0 < b < total, (a, b, total)
    assert a + b == total
    return results


def test_concurrent_app_builds_report_their_own_bytes(registry, tmp_path):
    builder = AppImageBuilder(registry, signing.generate_key(), tmp_path)
    spec = appimage.AppSpec(name="app", version="1.0", entrypoint=("/usr/bin/app",))

    def build(name: str, say: Callable[[str], None]) -> AppBuildResult:
        # Each build's own application: 64 KiB that compress poorly, different per build.
        sources = {f"{name}/__init__.py": (name * 1024).encode() + bytes(range(256)) * 256}
        return builder.build(spec, f"apps/{name}", {"linux/amd64": []}, sources, {}, progress=say)

    results = _run_side_by_side(registry, build)
    for name in ("a", "b"):
        assert results[name].bytes_uploaded >= results[name].images[0].app_bytes


def test_concurrent_registry_image_builds_report_their_own_bytes(registry, tmp_path, monkeypatch):
    # The .deb download and unpacking are replaced; the mirror argument tells the two
    # builds' packages apart.
    def fetch_deb(locked: Any, cache_dir: Path, mirror: str) -> bytes:
        return mirror.encode()

    def deb_members(deb: bytes, locked: Any) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
        binary = deb * 4096 + bytes(range(256)) * 256
        return {registryimage.BINARY: (tarfile.TarInfo(registryimage.BINARY), binary)}

    monkeypatch.setattr(registry_builder, "fetch_deb", fetch_deb)
    monkeypatch.setattr(registryimage, "deb_members", deb_members)
    key = signing.generate_key()

    def build(name: str, say: Callable[[str], None]) -> AppBuildResult:
        return registry_builder.build_registry_image(
            registry,
            key,
            tmp_path,
            repo=f"registries/{name}",
            platforms=["linux/amd64"],
            tags=[],
            mirror=f"mirror-{name}",
            progress=say,
        )

    _run_side_by_side(registry, build)
