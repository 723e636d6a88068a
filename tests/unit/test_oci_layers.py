"""Byte-reproducible layers: build_layer and layer_from_tar."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.domain import oci

ENTRIES = [
    oci.FileEntry.file("/opt/model/model.onnx", b"\x08\x01weights" * 100),
    oci.FileEntry.file("opt/app/serve.py", b"print('hi')\n", mode=0o755),
    oci.FileEntry.link("usr/local/bin/serve", "/opt/app/serve.py"),
    oci.FileEntry.dir("var/cache/edgefleet", mode=0o700),
]


def members(layer: oci.Layer) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layer.blob.data), mode="r:gz") as tar:
        return tar.getmembers()


def make_tar(items: list[tuple[tarfile.TarInfo, bytes | None]], fmt=tarfile.GNU_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in items:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, **attrs) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    for key, value in attrs.items():
        setattr(ti, key, value)
    return ti


def test_same_entries_give_identical_bytes():
    first, second = oci.build_layer(ENTRIES), oci.build_layer(list(ENTRIES))
    assert first.blob.data == second.blob.data
    assert first.blob.digest == second.blob.digest
    assert first.diff_id == second.diff_id
    assert first.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(first.blob.data)).hexdigest()
    assert first.uncompressed_size == len(gzip.decompress(first.blob.data))
    assert first.blob.media_type == oci.OCI_LAYER_GZIP


@settings(max_examples=25, deadline=None)
@given(st.permutations(ENTRIES))
def test_entry_order_does_not_matter(order):
    assert oci.build_layer(order).blob.digest == oci.build_layer(ENTRIES).blob.digest


def test_layer_is_normalised_sorted_and_has_parents():
    tar_members = members(oci.build_layer(ENTRIES))
    names = [m.name for m in tar_members]
    assert names == sorted(names)
    assert {"opt", "opt/app", "opt/model", "usr", "usr/local", "usr/local/bin", "var"} <= set(names)
    for m in tar_members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
    by_name = {m.name: m for m in tar_members}
    assert by_name["opt"].isdir()
    assert by_name["opt"].mode == 0o755
    assert by_name["var/cache/edgefleet"].mode == 0o700
    assert by_name["opt/app/serve.py"].mode == 0o755
    assert by_name["usr/local/bin/serve"].issym()
    assert by_name["usr/local/bin/serve"].linkname == "/opt/app/serve.py"


def test_gzip_header_has_no_timestamp_or_name():
    data = oci.build_layer(ENTRIES).blob.data
    assert data[:4] == b"\x1f\x8b\x08\x00"  # deflate, no FNAME/FEXTRA flags
    assert data[4:8] == b"\0\0\0\0"  # mtime 0


def test_content_changes_change_the_digest():
    changed = [*ENTRIES[1:], oci.FileEntry.file("opt/model/model.onnx", b"new weights")]
    assert oci.build_layer(changed).blob.digest != oci.build_layer(ENTRIES).blob.digest
    chmod = [*ENTRIES[:1], oci.FileEntry.file("opt/app/serve.py", b"print('hi')\n"), *ENTRIES[2:]]
    assert oci.build_layer(chmod).blob.digest != oci.build_layer(ENTRIES).blob.digest


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([oci.FileEntry.file("a", b"1"), oci.FileEntry.file("/a", b"2")], "given twice"),
        ([oci.FileEntry.file("a", b"1"), oci.FileEntry.file("a/b", b"2")], "not a directory"),
    ],
)
def test_conflicting_entries_are_rejected(entries, message):
    with pytest.raises(oci.OCIError, match=message):
        oci.build_layer(entries)


def test_bad_entries_are_rejected():
    with pytest.raises(oci.OCIError, match="escapes"):
        oci.FileEntry.file("../etc/passwd", b"")
    with pytest.raises(oci.OCIError, match="root"):
        oci.FileEntry.dir("/")
    with pytest.raises(oci.OCIError, match="exactly one"):
        oci.FileEntry("a", data=b"", directory=True)


def rootfs(order: list[int], mtime_base: int, owner: str) -> bytes:
    """A small rootfs tarball in a given entry order, with given mtimes and owner names."""
    entries = [
        (info("./", tarfile.DIRTYPE, mode=0o755), None),
        (info("./etc", tarfile.DIRTYPE, mode=0o755), None),
        (info("./etc/hostname", size=5, mode=0o644), b"edge\n"),
        (info("./usr/bin/python3", size=3, mode=0o755), b"elf"),
        (info("./usr/bin/python3.11", tarfile.LNKTYPE, linkname="./usr/bin/python3"), None),
        (info("./var/mail", tarfile.DIRTYPE, mode=0o2775, gid=8), None),
        (info("./dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), None),
    ]
    items = []
    for index in order:
        ti, data = entries[index]
        ti.mtime = mtime_base + index
        ti.uname = ti.gname = owner
        items.append((ti, data))
    return make_tar(items)


def test_layer_from_tar_normalises_order_times_and_names():
    one = oci.layer_from_tar(rootfs([0, 1, 2, 3, 4, 5, 6], 1_700_000_000, "root"))
    two = oci.layer_from_tar(rootfs([0, 6, 5, 3, 4, 1, 2], 1_600_000_000, "other"))
    assert one.blob.digest == two.blob.digest
    by_name = {m.name: m for m in members(one)}
    assert "dev/null" not in by_name  # device nodes dropped by default
    assert "dev" not in by_name
    assert by_name["usr"].isdir()  # missing parent added
    assert by_name["var/mail"].gid == 8
    assert by_name["var/mail"].mode == 0o2775
    assert by_name["usr/bin/python3"].isreg()
    assert by_name["usr/bin/python3.11"].islnk()
    assert by_name["usr/bin/python3.11"].linkname == "usr/bin/python3"
    assert all(m.mtime == 0 and m.uname == "" for m in by_name.values())
    devices = oci.layer_from_tar(rootfs(list(range(7)), 0, "root"), keep_devices=True)
    assert {m.name for m in members(devices)} >= {"dev", "dev/null"}


def test_layer_from_tar_repoints_hard_links_that_sort_first():
    data = make_tar(
        [
            (info("zz/real", size=4), b"data"),
            (info("aa/alias", tarfile.LNKTYPE, linkname="zz/real"), None),
        ]
    )
    with tarfile.open(fileobj=io.BytesIO(oci.layer_from_tar(data).blob.data)) as tar:
        by_name = {m.name: m for m in tar.getmembers()}
        assert by_name["aa/alias"].isreg()
        alias = tar.extractfile("aa/alias")
        assert alias is not None
        assert alias.read() == b"data"
        assert by_name["zz/real"].islnk()
        assert by_name["zz/real"].linkname == "aa/alias"


def test_layer_from_tar_clamps_mtimes_and_keeps_xattrs(tmp_path):
    cap = info("usr/bin/ping", size=1, mtime=2_000_000_000)
    cap.pax_headers = {"SCHILY.xattr.security.capability": "\x01", "mtime": "2000000000.5"}
    old = info("usr/lib/x.py", size=1, mtime=1_000)
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(gzip.compress(make_tar([(cap, b"p"), (old, b"x")], tarfile.PAX_FORMAT)))
    layer = oci.layer_from_tar(path, clamp_mtime=1_500_000_000)
    by_name = {m.name: m for m in members(layer)}
    assert by_name["usr/bin/ping"].mtime == 1_500_000_000
    assert by_name["usr/lib/x.py"].mtime == 1_000
    assert by_name["usr/bin/ping"].pax_headers == {"SCHILY.xattr.security.capability": "\x01"}


def test_layer_from_tar_is_idempotent_on_built_layers():
    layer = oci.build_layer(ENTRIES)
    assert oci.layer_from_tar(gzip.decompress(layer.blob.data)).blob.digest == layer.blob.digest


def test_layer_from_tar_rejects_escaping_paths_and_dangling_links():
    with pytest.raises(oci.OCIError, match="escapes"):
        oci.layer_from_tar(make_tar([(info("../evil", size=1), b"x")]))
    with pytest.raises(oci.OCIError, match="missing"):
        oci.layer_from_tar(make_tar([(info("a", tarfile.LNKTYPE, linkname="nowhere"), None)]))
