"""Python app image assembly: launchers, owned state directories, configs, reproducibility."""

from __future__ import annotations

import gzip
import importlib.resources
import io
import json
import tarfile

import pytest

from edgefleet.domain import appimage, nodeimage, oci


def _members(layer):
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.blob.data))) as tar:
        return {m.name: (m, tar.extractfile(m).read() if m.isfile() else None) for m in tar}


SCRIPTS = {"edgefleet-node": "edgefleet_node.agent.cli:main"}
SOURCES = {"pkg/__init__.py": b"", "pkg/mod.py": b"X = 1\n", "pkg/py.typed": b""}


def test_app_layer_holds_sources_launcher_and_an_owned_state_dir():
    spec = nodeimage.node_spec("1.2.3", SCRIPTS)
    layer = appimage.app_layer(SOURCES, SCRIPTS, spec.dirs)
    members = _members(layer)
    assert members["opt/edgefleet/app/pkg/mod.py"][1] == b"X = 1\n"
    info, launcher = members["usr/local/bin/edgefleet-node"]
    assert info.mode == 0o755
    assert info.uid == 0
    assert b"from edgefleet_node.agent.cli import main" in launcher
    assert launcher.startswith(b"#!/usr/bin/python3\n")
    state, _ = members[nodeimage.STATE_DIR]
    assert (state.uid, state.gid, state.mode) == (65532, 65532, 0o700)
    assert all(m.mtime == 0 for m, _ in members.values())
    assert layer == appimage.app_layer(dict(reversed(SOURCES.items())), SCRIPTS, spec.dirs)


@pytest.mark.parametrize(
    ("sources", "scripts"),
    [
        ({"../evil.py": b""}, {}),
        ({"/abs.py": b""}, {}),
        ({"pkg/binary.so": b""}, {}),
        ({}, {"x": "not an entry point"}),
        ({}, {"bad name!": "m:f"}),
    ],
)
def test_unsafe_inputs_are_refused(sources, scripts):
    with pytest.raises((ValueError, oci.OCIError)):
        appimage.app_layer(sources, scripts)


def test_spec_refuses_root_and_a_missing_entrypoint():
    with pytest.raises(ValueError, match="non-root"):
        appimage.AppSpec("x", "1", ("/x",), user="0:0")
    with pytest.raises(ValueError, match="non-root"):
        appimage.AppSpec("x", "1", ("/x",), user="root")
    with pytest.raises(ValueError, match="entrypoint"):
        appimage.AppSpec("x", "1", ())
    with pytest.raises(ValueError, match="console script"):
        nodeimage.node_spec("1", {"other": "m:f"})


def test_config_says_entrypoint_user_env_and_platform():
    platform = oci.Platform.parse("linux/arm64")
    base_layer = oci.build_layer([oci.FileEntry.file("etc/os-release", b"debian")])
    base_cfg = oci.image_config(platform, [base_layer.diff_id], env={"PATH": "/usr/bin"})
    base = oci.parse_config(base_cfg.data)
    spec = nodeimage.node_spec("1.2.3", SCRIPTS)
    site = appimage.site_packages_layer([])
    app = appimage.app_layer(SOURCES, SCRIPTS, spec.dirs)
    image = appimage.assemble(base, [base_layer.descriptor()], site, app, spec)
    doc = json.loads(image.config.data)
    assert doc["architecture"] == "arm64"
    assert doc["config"]["Entrypoint"] == ["/usr/local/bin/edgefleet-node"]
    assert doc["config"]["Cmd"] == ["run"]
    assert doc["config"]["User"] == "65532:65532"
    env = dict(e.split("=", 1) for e in doc["config"]["Env"])
    assert env["PYTHONPATH"] == "/opt/edgefleet/app:/opt/edgefleet/site-packages"
    assert env["EDGEFLEET_NODE_STATE_DIR"] == "/var/lib/edgefleet-node"
    assert env["PATH"] == "/usr/bin"
    assert doc["rootfs"]["diff_ids"] == [base_layer.diff_id, site.diff_id, app.diff_id]
    manifest = json.loads(image.manifest.data)
    assert [d["digest"] for d in manifest["layers"]][-1] == app.blob.digest
    again = appimage.assemble(base, [base_layer.descriptor()], site, app, spec)
    assert again.manifest.digest == image.manifest.digest


def test_the_committed_lock_covers_both_platforms_and_only_cryptography():
    text = importlib.resources.files("edgefleet.domain").joinpath(nodeimage.LOCK_FILE).read_text()
    lock = nodeimage.parse(text)
    for platform in ("linux/amd64", "linux/arm64"):
        names = {w.name for w in nodeimage.wheels_for(lock, platform)}
        # the Docker client is the standard library's: no docker SDK, requests, urllib3
        assert names == {"cryptography", "cffi", "pycparser"}
    with pytest.raises(KeyError, match=r"hack/lock-app-image\.py"):
        nodeimage.wheels_for(lock, "linux/arm/v7")
