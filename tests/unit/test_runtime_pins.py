"""Per-platform runtime pins and the committed wheel lock (no network)."""

from __future__ import annotations

import importlib.resources
import json

import pytest

from edgefleet.domain.runtime_lock import (
    LockedWheel,
    LockError,
    check_wheel_filename,
    parse_lock,
    render_lock,
    wheel_tags,
)
from edgefleet.domain.runtime_pins import (
    SUPPORTED_PLATFORMS,
    RuntimePins,
    UnsupportedPlatform,
    UnsupportedPlatformError,
    require_runtime,
    runtime_for,
)

LOCK_TEXT = importlib.resources.files("edgefleet.domain").joinpath("runtime_lock.json").read_text()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_supported_platforms_pin_onnxruntime_and_numpy() -> None:
    assert SUPPORTED_PLATFORMS == ("linux/amd64", "linux/arm64")
    for platform in SUPPORTED_PLATFORMS:
        runtime = require_runtime(platform)
        assert {p.name for p in runtime.pins} == {"onnxruntime", "numpy"}
        assert all(p.reason for p in runtime.pins)


def test_arm64_stays_below_the_onnxruntime_that_segfaults_under_qemu() -> None:
    runtime = require_runtime("linux/arm64")
    assert _version(runtime.version_of("onnxruntime")) <= (1, 27, 0)
    assert "qemu" in next(p.reason for p in runtime.pins if p.name == "onnxruntime")
    assert runtime_for("linux/arm64/v8") == runtime
    assert _version(require_runtime("linux/amd64").version_of("onnxruntime")) >= (1, 28, 0)


def test_armv7_is_unsupported_and_says_what_is_missing() -> None:
    result = runtime_for("linux/arm/v7")
    assert isinstance(result, UnsupportedPlatform)
    assert result.missing == "onnxruntime"
    for words in ("no armv7", "PyPI", "Debian bookworm has no onnxruntime"):
        assert words in result.message
    with pytest.raises(UnsupportedPlatformError, match="armv7") as info:
        require_runtime("linux/arm/v7")
    assert info.value.result == result
    other = runtime_for("linux/s390x")
    assert isinstance(other, UnsupportedPlatform)
    assert "linux/amd64, linux/arm64" in other.message


def test_wheel_platform_tags_follow_bookworm_glibc() -> None:
    tags = require_runtime("linux/arm64").wheel_platform_tags
    assert tags[0] == "manylinux_2_36_aarch64"
    assert {"manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"} <= set(
        tags
    )
    assert "manylinux_2_37_aarch64" not in tags
    assert all(t.endswith("aarch64") for t in tags)
    assert all(t.endswith("x86_64") for t in require_runtime("linux/amd64").wheel_platform_tags)


def test_cache_keys_name_the_pin_set() -> None:
    amd, arm = require_runtime("linux/amd64"), require_runtime("linux/arm64")
    assert amd.cache_key() == require_runtime("linux/amd64").cache_key()
    assert amd.cache_key().startswith("linux-amd64-")
    assert amd.cache_key() != arm.cache_key()
    bumped = RuntimePins(arm.platform, arm.machine, arm.pins[:1])
    assert bumped.cache_key() != arm.cache_key()


def test_committed_lock_matches_the_pins() -> None:
    lock = parse_lock(LOCK_TEXT)
    for platform in SUPPORTED_PLATFORMS:
        runtime = require_runtime(platform)
        wheels = lock.wheels_for(runtime)
        assert {(w.name, w.version) for w in wheels} == {(p.name, p.version) for p in runtime.pins}
    assert render_lock(lock.platforms) == LOCK_TEXT


def test_a_stale_lock_says_to_relock() -> None:
    doc = json.loads(LOCK_TEXT)
    wheel = doc["platforms"]["linux/arm64"][1]
    wheel["version"] = "1.28.0"
    wheel["filename"] = wheel["filename"].replace("1.27.0", "1.28.0")
    lock = parse_lock(json.dumps(doc))
    with pytest.raises(LockError, match=r"hack/lock-runtime\.py"):
        lock.wheels_for(require_runtime("linux/arm64"))
    with pytest.raises(LockError, match="no entry for linux/amd64"):
        parse_lock('{"platforms": {}}').wheels_for(require_runtime("linux/amd64"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "not JSON"),
        ("{}", 'no "platforms"'),
        ('{"platforms": {"linux/amd64": {}}}', "must be a list"),
        ('{"platforms": {"linux/amd64": [{"name": "numpy"}]}}', "lacks or mistypes"),
    ],
)
def test_malformed_locks_are_rejected(text: str, message: str) -> None:
    with pytest.raises(LockError, match=message):
        parse_lock(text)


def test_lock_entries_must_agree_with_their_file_name() -> None:
    bad = LockedWheel(
        "numpy", "2.4.5", "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl", "a" * 64, 1
    )
    with pytest.raises(LockError, match=r"is not numpy 2\.4\.5"):
        parse_lock(render_lock({"linux/amd64": [bad]}))


def test_wheel_file_names_are_checked_against_the_platform() -> None:
    arm = require_runtime("linux/arm64")
    check_wheel_filename(
        "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl", arm
    )
    check_wheel_filename("packaging-26.3-py3-none-any.whl", arm)
    for name in [
        "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl",  # wrong arch
        "numpy-2.4.6-cp312-cp312-manylinux_2_28_aarch64.whl",  # wrong Python
        "numpy-2.4.6-cp311-cp311-manylinux_2_39_aarch64.whl",  # needs a newer glibc
        "numpy-2.4.6-cp311-cp311-musllinux_1_2_aarch64.whl",  # not glibc
    ]:
        with pytest.raises(LockError, match="does not install on linux/arm64"):
            check_wheel_filename(name, arm)
    assert wheel_tags("Foo.Bar-1.0-1-py3-none-any.whl")[:2] == ("foo_bar", "1.0")
    with pytest.raises(LockError, match="not a wheel file name"):
        wheel_tags("numpy-2.4.6.tar.gz")


@pytest.mark.parametrize(
    ("filename", "installs"),
    [
        ("protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl", True),  # older abi3
        ("cryptography-50.0.2-cp311-abi3-manylinux_2_34_x86_64.whl", True),
        ("future-1.0-cp312-abi3-manylinux2014_x86_64.whl", False),  # needs a newer CPython
        ("numpy-2.4.6-cp310-cp310-manylinux_2_28_x86_64.whl", False),  # another CPython's ABI
        ("six-1.16.0-py2.py3-none-any.whl", True),
        ("numpy-2.4.6-cp311-cp311-manylinux_2_28_aarch64.whl", False),  # another machine
    ],
)
def test_wheel_compatibility_with_cpython_311_on_amd64(filename, installs) -> None:
    runtime = require_runtime("linux/amd64")
    if installs:
        check_wheel_filename(filename, runtime)
    else:
        with pytest.raises(LockError):
            check_wheel_filename(filename, runtime)
