"""The pinned runtime wheels, downloaded for real from PyPI, verified, cached and served from.

These tests reach PyPI (the one outside service this tier may use) and write only to
their own temporary directories.
"""

from __future__ import annotations

import http.client
import json
import os
import struct
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgefleet.clients.wheels import fetch_wheels, file_sha256, load_lock, runtime_layer_entries
from edgefleet.domain.runtime_layer import RUNTIME_CMD, RUNTIME_ENV
from edgefleet.domain.runtime_pins import UnsupportedPlatformError, require_runtime
from edgefleet.testing.models import ModelFixture, make_mlp
from edgefleet.testing.procs import Service, free_port, wait_until

pytestmark = pytest.mark.integration

EM_X86_64, EM_AARCH64 = 62, 183


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheel-cache")


@pytest.fixture(scope="module")
def downloaded(cache: Path) -> dict[str, list[Path]]:
    return {platform: fetch_wheels(platform, cache) for platform in ("linux/amd64", "linux/arm64")}


def _elf_machines(wheel: Path) -> set[int]:
    """``e_machine`` of every shared object in the wheel."""
    machines = set()
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if ".so" in Path(name).name:
                header = archive.open(name).read(20)
                assert header[:4] == b"\x7fELF", name
                machines.add(struct.unpack_from("<H", header, 18)[0])
    return machines


def _wheel_tags(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/WHEEL"))
        text = archive.read(meta).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def test_downloaded_sets_match_the_lock(downloaded: dict[str, list[Path]]) -> None:
    lock = load_lock()
    for platform, paths in downloaded.items():
        locked = {w.filename: w for w in lock.wheels_for(require_runtime(platform))}
        assert sorted(p.name for p in paths) == sorted(locked)
        for path in paths:
            assert file_sha256(path) == locked[path.name].sha256
            assert path.stat().st_size == locked[path.name].size
        total = sum(p.stat().st_size for p in paths)
        print(f"{platform}: {len(paths)} wheels, {total / 1e6:.1f} MB")


def test_arm64_wheels_are_aarch64_and_amd64_wheels_x86_64(
    downloaded: dict[str, list[Path]],
) -> None:
    for platform, machine, arch in (
        ("linux/arm64", EM_AARCH64, "aarch64"),
        ("linux/amd64", EM_X86_64, "x86_64"),
    ):
        for wheel in downloaded[platform]:
            tags = _wheel_tags(wheel)
            assert tags
            assert all(
                tag.startswith("cp311-cp311-manylinux") and tag.endswith(arch) for tag in tags
            ), tags
            assert _elf_machines(wheel) == {machine}, wheel.name


def test_a_cache_hit_runs_no_pip(downloaded: dict[str, list[Path]], cache: Path) -> None:
    again = fetch_wheels("linux/arm64", cache, python="/nonexistent/python")
    assert again == downloaded["linux/arm64"]


def test_concurrent_fetches_share_one_verified_download(tmp_path: Path) -> None:
    results: list[list[Path]] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            results.append(fetch_wheels("linux/arm64", tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)
    assert not errors
    assert len(results) == 3
    assert results[0] == results[1] == results[2]
    leftovers = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert leftovers == [require_runtime("linux/arm64").cache_key()]


def test_a_tampered_cache_is_replaced(tmp_path: Path) -> None:
    (first, *_) = fetch_wheels("linux/arm64", tmp_path)
    good = file_sha256(first)
    with first.open("r+b") as f:
        f.seek(1000)
        f.write(b"tampered")
    assert file_sha256(first) != good
    (again, *_) = fetch_wheels("linux/arm64", tmp_path)
    assert file_sha256(again) == good


def test_armv7_fails_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedPlatformError, match="no armv7"):
        fetch_wheels("linux/arm/v7", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.fixture
def unpacked_amd64(tmp_path: Path, downloaded: dict[str, list[Path]], cache: Path) -> Path:
    """The amd64 runtime layer's files written under ``tmp_path/root``."""
    del downloaded  # already in the cache
    root = tmp_path / "root"
    for entry in runtime_layer_entries("linux/amd64", cache):
        target = root / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(entry.data or b"")
        target.chmod(entry.mode or 0o644)
    return root


@dataclass
class Served:
    port: int
    started: float
    fixture: ModelFixture
    service: Service


@pytest.fixture
def served(unpacked_amd64: Path, tmp_path: Path) -> Iterator[Served]:
    """The server started from the unpacked layer with ``python -S`` (no site-packages)."""
    fixture = make_mlp(tmp_path / "model.onnx", target_bytes=50_000, seed=11)
    port = free_port()
    env = dict(RUNTIME_ENV)
    env["PYTHONPATH"] = ":".join(str(unpacked_amd64) + p for p in env["PYTHONPATH"].split(":"))
    env.update(
        PATH=os.environ.get("PATH", "/usr/bin:/bin"),
        EDGEFLEET_MODEL_PATH=str(fixture.path),
        EDGEFLEET_MODEL_SHA256=fixture.sha256,
        EDGEFLEET_PORT=str(port),
        EDGEFLEET_BIND="127.0.0.1",
    )
    argv = [sys.executable, "-S", *RUNTIME_CMD[1:]]
    started = time.monotonic()
    service = Service("serving", argv, tmp_path / "serving.log", env=env, cwd=tmp_path)
    try:
        yield Served(port, started, fixture, service)
    finally:
        service.stop()


def _health(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def test_the_unpacked_amd64_layer_serves_without_site_packages(served: Served) -> None:
    wait_until(
        lambda: _health(served.port) == 200,
        timeout=60,
        what="/healthz 200",
        alive=served.service.check_alive,
    )
    print(f"cold start from the unpacked layer: {time.monotonic() - served.started:.2f}s")
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        conn.request("POST", "/v1/predict", body=json.dumps(served.fixture.probe_request()))
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200, body
    assert served.fixture.matches(body["outputs"])
    lines = [json.loads(line) for line in served.service.log_path.read_text().splitlines()]
    ready = next(r for r in lines if r["event"] == "model_ready")
    assert ready["sha256"] == served.fixture.sha256
    pins = require_runtime("linux/amd64")
    assert ready["runtime"] == {
        "onnxruntime": pins.version_of("onnxruntime"),
        "numpy": pins.version_of("numpy"),
    }
