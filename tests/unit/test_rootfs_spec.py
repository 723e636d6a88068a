"""The rootfs recipe: cache keys, the mmdebstrap command, and cache hits that cost nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.clients import rootfs, rootfs_cli


def test_key_names_suite_arch_and_a_hash_of_the_package_set() -> None:
    spec = rootfs.RootfsSpec("arm64")
    suite, arch, digest = spec.key.split("-")
    assert (suite, arch, len(digest)) == ("bookworm", "arm64", 12)
    shuffled = rootfs.RootfsSpec("arm64", packages=tuple(reversed(rootfs.DEFAULT_PACKAGES)) * 2)
    assert shuffled.key == spec.key
    assert rootfs.RootfsSpec("arm64", packages=("python3",)).key != spec.key
    assert rootfs.RootfsSpec("amd64").key.removeprefix("bookworm-amd64-") == digest


def test_the_mirror_is_not_part_of_the_key() -> None:
    local = rootfs.RootfsSpec("amd64", mirror="http://127.0.0.1:9999/debian")
    assert local.key == rootfs.RootfsSpec("amd64").key


def test_mmdebstrap_command_is_essential_trimmed_and_merged_usr(tmp_path: Path) -> None:
    out = tmp_path / "x.tar"
    argv = rootfs.RootfsSpec("armhf").argv(out)
    assert argv[:5] == [
        "mmdebstrap",
        "--variant=essential",
        "--architectures=armhf",
        "--include=ca-certificates,libgomp1,libstdc++6,python3,python3-venv",
        "--format=tar",
    ]
    assert "--dpkgopt=path-exclude=/usr/share/man/*" in argv
    assert "--dpkgopt=path-include=/usr/share/doc/*/copyright" in argv
    assert "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr" in argv
    assert argv[-5:] == [
        "bookworm",
        str(out),
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    assert rootfs.RootfsSpec("armhf").platform == "linux/arm/v7"


def test_unknown_architecture_is_refused_with_the_known_ones() -> None:
    with pytest.raises(rootfs.RootfsError, match="known: amd64, arm64, armhf"):
        rootfs.RootfsSpec("riscv64")


def test_a_cached_rootfs_is_returned_without_building(tmp_path: Path) -> None:
    spec = rootfs.RootfsSpec("arm64")
    (tmp_path / f"{spec.key}.tar").write_bytes(b"\0" * 1024)
    messages: list[str] = []
    result = rootfs.ensure_rootfs(spec, cache=tmp_path, progress=messages.append)
    assert (result.path, result.size, result.built) == (tmp_path / f"{spec.key}.tar", 1024, False)
    assert messages == []


def test_cli_path_prints_cached_paths_and_fails_for_missing_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = rootfs.RootfsSpec("amd64")
    (tmp_path / f"{spec.key}.tar").write_bytes(b"x")
    assert rootfs_cli.main(["path", "--arch", "amd64", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / f"{spec.key}.tar")
    assert rootfs_cli.main(["path", "--arch", "arm64", "--cache-dir", str(tmp_path)]) == 1
    assert "not cached" in capsys.readouterr().err


def test_without_security_updates_only_the_suite_is_used_under_another_key() -> None:
    plain = rootfs.RootfsSpec("armhf", security=False)
    assert plain.key != rootfs.RootfsSpec("armhf").key
    assert plain.sources() == ["deb http://deb.debian.org/debian bookworm main"]
