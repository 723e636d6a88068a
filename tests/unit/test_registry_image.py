"""The bundled registry image's pure parts: the lock, .deb unpacking, the layer and
config (non-root, storage owned by the registry's user), and a chart version that
matches the image tag the project builds."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib

import pytest
import yaml

from edgefleet.clients.registryimage import load_lock
from edgefleet.domain import oci, registryimage
from tests.conftest import ROOT


def _ar(members: dict[str, bytes]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def _deb(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return _ar({"debian-binary": b"2.0\n", "control.tar.xz": b"x", "data.tar.xz": buf.getvalue()})


def _locked(deb: bytes) -> registryimage.LockedDeb:
    path = "pool/main/d/docker-registry/docker-registry_1_amd64.deb"
    return registryimage.LockedDeb("linux/amd64", path, len(deb), hashlib.sha256(deb).hexdigest())


FILES = {registryimage.BINARY: b"\x7fELF...", registryimage.COPYRIGHT: b"Apache-2.0", "etc/x": b""}


def test_lock_pins_both_architectures():
    lock = load_lock()
    assert set(lock.debs) == {"linux/amd64", "linux/arm64"}
    assert lock.package == "docker-registry"
    assert lock.suite == "bookworm"
    with pytest.raises(registryimage.DebError, match="no linux/riscv64"):
        lock.deb("linux/riscv64")


def test_a_deb_that_differs_from_the_lock_is_refused():
    deb = _deb(FILES)
    locked = _locked(deb)
    with pytest.raises(registryimage.DebError, match="does not match the lock"):
        registryimage.deb_members(deb + b"x", locked)
    with pytest.raises(registryimage.DebError, match="not an ar archive"):
        registryimage.deb_members(b"x" * len(deb), _locked(b"x" * len(deb)))
    partial = _deb({registryimage.BINARY: b"bin"})
    with pytest.raises(registryimage.DebError, match="missing usr/share/doc"):
        registryimage.deb_members(partial, _locked(partial))


def test_layer_holds_the_binary_config_and_a_storage_dir_owned_by_the_registry_user():
    deb = _deb(FILES)
    files = registryimage.deb_members(deb, _locked(deb))
    assert set(files) == {registryimage.BINARY, registryimage.COPYRIGHT}
    layer = registryimage.registry_layer(files)
    assert registryimage.registry_layer(files).blob.digest == layer.blob.digest  # reproducible
    with tarfile.open(fileobj=io.BytesIO(layer.blob.data), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members[registryimage.BINARY].mode == 0o755
        storage = members[registryimage.STORAGE_DIR]
        assert (storage.uid, storage.mode) == (registryimage.UID, 0o700)
        config = tar.extractfile(members[registryimage.CONFIG_PATH]).read()  # type: ignore[union-attr]
    assert yaml.safe_load(config)["storage"]["filesystem"]["rootdirectory"] == "/var/lib/registry"
    base = oci.parse_config(
        oci.image_config(oci.Platform.parse("linux/arm64"), [], cmd=["/bin/sh"]).data
    )
    image = registryimage.assemble(base, [], layer, "2.8.2")
    doc = json.loads(image.config.data)
    assert doc["config"]["User"] == "65532:65532"
    assert doc["config"]["Entrypoint"] == ["/usr/bin/docker-registry", "serve"]
    assert doc["architecture"] == "arm64"


def test_chart_app_version_is_the_image_tag_the_project_builds():
    chart = yaml.safe_load((ROOT / "charts/edgefleet/Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The chart's default image tag is its appVersion; `edgefleet image
    # build-control-plane` tags the image with the package version.
    assert chart["appVersion"] == project["version"]
