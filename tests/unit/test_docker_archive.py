"""The docker-load archive streamed from verified blobs: layout, and tampering caught."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from edgefleet.domain import oci
from edgefleet_node.agent import docker_archive


def _store(tmp_path, blobs):
    paths = {}
    for blob in blobs:
        path = tmp_path / blob.digest.removeprefix("sha256:")
        path.write_bytes(blob.data)
        paths[blob.digest] = path
    return paths


def _image(tmp_path, files=(b"one", b"two")):
    layers = [oci.build_layer([oci.FileEntry.file(f"f{i}", d)]) for i, d in enumerate(files)]
    config = oci.image_config(oci.Platform.parse("linux/arm64"), [la.diff_id for la in layers])
    paths = _store(tmp_path, [config] + [la.blob for la in layers])
    parts = [(la.blob.digest, paths[la.blob.digest], oci.OCI_LAYER_GZIP) for la in layers]
    return config, paths[config.digest], parts, layers


def test_archive_is_a_docker_save_tar_with_config_and_layers(tmp_path):
    config, config_path, parts, layers = _image(tmp_path)
    members = docker_archive.plan_archive(
        config_path, config.digest, parts, repo_tags=["edgefleet/workload:sha256-x"]
    )
    data = docker_archive.archive_bytes(members)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        config_name = config.digest.removeprefix("sha256:") + ".json"
        assert manifest == [
            {
                "Config": config_name,
                "Layers": [
                    la.blob.digest.removeprefix("sha256:") + "/layer.tar.gz" for la in layers
                ],
                "RepoTags": ["edgefleet/workload:sha256-x"],
            }
        ]
        assert tar.extractfile(config_name).read() == config.data
        for layer in layers:
            name = layer.blob.digest.removeprefix("sha256:") + "/layer.tar.gz"
            assert tar.extractfile(name).read() == layer.blob.data


def test_small_chunks_give_the_same_bytes(tmp_path):
    config, config_path, parts, _ = _image(tmp_path, files=(b"x" * 5000, b"y" * 70000))
    members = docker_archive.plan_archive(config_path, config.digest, parts)
    whole = docker_archive.archive_bytes(members)
    chunks = list(docker_archive.archive_stream(members, chunk=1000))
    assert b"".join(chunks) == whole
    assert max(len(c) for c in chunks) <= 1024 * 2  # streamed, never whole files


def test_a_layer_changed_after_verification_stops_the_stream_before_its_end(tmp_path):
    config, config_path, parts, layers = _image(tmp_path, files=(b"a" * 10, os.urandom(200000)))
    members = docker_archive.plan_archive(config_path, config.digest, parts)
    target = parts[1][1]
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.write_bytes(bytes(data))
    sent = bytearray()

    def drain():
        for chunk in docker_archive.archive_stream(members, chunk=4096):
            sent.extend(chunk)

    with pytest.raises(docker_archive.ArchiveError, match="changed on disk"):
        drain()
    assert len(sent) < len(data) + 3 * 512 + sum(len(la.blob.data) for la in layers[:1])
    assert bytes(data[-4096:]) not in sent, "the tampered tail never reaches the engine"


def test_a_config_that_does_not_match_its_digest_is_refused(tmp_path):
    config, config_path, parts, _ = _image(tmp_path)
    config_path.write_bytes(config.data + b" ")
    with pytest.raises(docker_archive.ArchiveError, match="no longer has digest"):
        docker_archive.plan_archive(config_path, config.digest, parts)


def test_layer_count_and_media_type_are_checked(tmp_path):
    config, config_path, parts, _ = _image(tmp_path)
    with pytest.raises(docker_archive.ArchiveError, match="lists 2 layers"):
        docker_archive.plan_archive(config_path, config.digest, parts[:1])
    bad = [(parts[0][0], parts[0][1], "application/vnd.oci.image.config.v1+json"), parts[1]]
    with pytest.raises(docker_archive.ArchiveError, match="not a tar layer"):
        docker_archive.plan_archive(config_path, config.digest, bad)
    parts[1][1].unlink()
    with pytest.raises(docker_archive.ArchiveError, match="not in the blob store"):
        docker_archive.plan_archive(config_path, config.digest, parts)


def test_chain_ids_follow_the_engine_rule():
    a, b, c = ("sha256:" + ch * 64 for ch in "abc")
    ab = oci.sha256_digest(f"{a} {b}".encode())
    assert docker_archive.chain_ids([a, b, c]) == [a, ab, oci.sha256_digest(f"{ab} {c}".encode())]
    assert docker_archive.chain_ids([]) == []


def _names(members):
    return [m.name for m in members if m.path is not None]


def test_layers_the_engine_holds_are_named_but_not_sent(tmp_path):
    config, config_path, parts, layers = _image(tmp_path, files=(b"base", b"runtime", b"model"))
    chains = docker_archive.chain_ids([la.diff_id for la in layers])
    members = docker_archive.plan_archive(
        config_path, config.digest, parts, present=frozenset(chains[:2])
    )
    with tarfile.open(fileobj=io.BytesIO(docker_archive.archive_bytes(members))) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        sent = [n for n in tar.getnames() if n.endswith(".tar.gz")]
    names = [la.blob.digest.removeprefix("sha256:") + "/layer.tar.gz" for la in layers]
    assert manifest[0]["Layers"] == names  # the engine still learns the whole stack
    assert sent == names[2:]


def test_only_a_held_prefix_counts(tmp_path):
    config, config_path, parts, layers = _image(tmp_path, files=(b"base", b"runtime", b"model"))
    chains = docker_archive.chain_ids([la.diff_id for la in layers])
    # The same runtime layer on another base is another stack: nothing is held.
    elsewhere = docker_archive.chain_ids(["sha256:" + "f" * 64, layers[1].diff_id])
    members = docker_archive.plan_archive(
        config_path, config.digest, parts, present=frozenset(elsewhere) | {chains[2]}
    )
    assert len(_names(members)) == 3


def test_a_repeated_layer_above_the_held_prefix_is_still_sent(tmp_path):
    same, model = (oci.build_layer([oci.FileEntry.file(n, n.encode())]) for n in ("s", "m"))
    stack = [same, model, same]  # the engine holds the first, not the stack [s, m, s]
    config = oci.image_config(oci.Platform.parse("linux/arm64"), [la.diff_id for la in stack])
    paths = _store(tmp_path, [config, same.blob, model.blob])
    parts = [(la.blob.digest, paths[la.blob.digest], oci.OCI_LAYER_GZIP) for la in stack]
    chains = docker_archive.chain_ids([la.diff_id for la in stack])
    members = docker_archive.plan_archive(
        paths[config.digest], config.digest, parts, present=frozenset(chains[:1])
    )
    names = [la.blob.digest.removeprefix("sha256:") + "/layer.tar.gz" for la in (model, same)]
    assert _names(members) == names
