"""Unpacking wheels and the serving package into runtime-layer entries (in memory)."""

from __future__ import annotations

import io
import zipfile

import pytest

from edgefleet.clients.wheels import serving_sources
from edgefleet.domain.oci import build_layer
from edgefleet.domain.runtime_layer import (
    APP_DIR,
    RUNTIME_CMD,
    RUNTIME_ENV,
    SITE_PACKAGES,
    WheelError,
    runtime_entries,
    serving_entries,
    wheels_to_entries,
)


def _wheel(members: dict[str, tuple[bytes, int]], dirs: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in dirs:
            archive.writestr(zipfile.ZipInfo(name), b"")
        for name, (data, mode) in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


DEMO = _wheel(
    {
        "demo/__init__.py": (b"x = 1\n", 0o664),
        "demo/_native.so": (b"\x7fELF", 0o775),
        "demo-1.0.dist-info/METADATA": (b"Name: demo\n", 0o644),
        "demo-1.0.data/platlib/demo_extra.py": (b"y = 2\n", 0o644),
        "demo-1.0.data/scripts/demo-cli": (b"#!python\n", 0o755),
    },
    dirs=("demo/",),
)


def test_wheels_unpack_into_site_packages_sorted_with_fixed_modes() -> None:
    entries = wheels_to_entries([("demo-1.0-py3-none-any.whl", DEMO)])
    assert [(e.path, e.mode) for e in entries] == [
        (f"{SITE_PACKAGES}/demo-1.0.dist-info/METADATA", 0o644),
        (f"{SITE_PACKAGES}/demo/__init__.py", 0o644),
        (f"{SITE_PACKAGES}/demo/_native.so", 0o755),
        (f"{SITE_PACKAGES}/demo_extra.py", 0o644),
    ]
    assert entries[1].data == b"x = 1\n"


def test_two_wheels_installing_the_same_file_is_an_error() -> None:
    with pytest.raises(WheelError, match=r"both install demo/__init__\.py"):
        wheels_to_entries([("a.whl", DEMO), ("b.whl", DEMO)])


@pytest.mark.parametrize("member", ["../evil.py", "demo/../../evil.py"])
def test_unsafe_members_are_refused(member: str) -> None:
    with pytest.raises(WheelError, match="unsafe member"):
        wheels_to_entries([("evil.whl", _wheel({member: (b"", 0o644)}))])


def test_a_non_zip_is_refused() -> None:
    with pytest.raises(WheelError, match="is not a wheel"):
        wheels_to_entries([("x.whl", b"not a zip")])


def test_serving_package_lands_under_the_app_dir() -> None:
    sources = serving_sources()
    assert {"__init__.py", "__main__.py", "server.py", "model.py"} <= sources.keys()
    entries = serving_entries(sources)
    paths = [e.path for e in entries]
    assert paths[0] == f"{APP_DIR}/edgefleet/__init__.py"
    assert entries[0].data == b""
    assert f"{APP_DIR}/edgefleet/serving/__main__.py" in paths
    assert RUNTIME_CMD == ("python3", "-m", "edgefleet.serving")
    assert dict(RUNTIME_ENV)["PYTHONPATH"] == f"/{APP_DIR}:/{SITE_PACKAGES}"
    with pytest.raises(WheelError, match=r"needs __init__\.py and __main__\.py"):
        serving_entries({"server.py": b""})


def test_the_same_inputs_give_the_same_layer_digest() -> None:
    wheels = [("demo-1.0-py3-none-any.whl", DEMO)]
    first = build_layer(runtime_entries(wheels, serving_sources()))
    second = build_layer(
        runtime_entries(list(reversed(wheels)), dict(reversed(serving_sources().items())))
    )
    assert first.blob.digest == second.blob.digest
    assert first.diff_id == second.diff_id
