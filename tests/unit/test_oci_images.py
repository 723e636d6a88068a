"""Image configs, manifests and indexes: deterministic JSON, and validating parsers."""

from __future__ import annotations

import json

import pytest

from edgefleet.domain import oci

ARM64 = oci.Platform.parse("linux/arm64")
ARMV7 = oci.Platform.parse("linux/arm/v7")
AMD64 = oci.Platform("linux", "amd64")
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def test_platform_parse_and_format():
    assert (ARMV7.os, ARMV7.architecture, ARMV7.variant) == ("linux", "arm", "v7")
    assert str(ARMV7) == "linux/arm/v7"
    assert str(ARM64) == "linux/arm64"
    assert ARMV7.to_json() == {"os": "linux", "architecture": "arm", "variant": "v7"}
    for bad in ("linux", "linux/arm/v7/x", "Linux/amd64", "linux//v7"):
        with pytest.raises(oci.OCIError):
            oci.Platform.parse(bad)


def test_config_is_canonical_json_with_fixed_time():
    config = oci.image_config(
        ARMV7,
        [D1, D2],
        entrypoint=["/usr/bin/python3", "-m", "serve"],
        cmd=["--port", "8080"],
        env={"B": "2", "A": "1"},
        exposed_ports=[8080, "9090/udp"],
        labels={"org.opencontainers.image.title": "resnet"},
        workdir="/srv",
        user="1000:1000",
    )
    doc = json.loads(config.data)
    assert config.data == oci.canonical_json(doc)  # sorted keys, no whitespace
    assert config.media_type == oci.OCI_CONFIG
    assert (doc["os"], doc["architecture"], doc["variant"]) == ("linux", "arm", "v7")
    assert doc["created"] == "1970-01-01T00:00:00Z"
    assert doc["rootfs"] == {"type": "layers", "diff_ids": [D1, D2]}
    assert [h["created"] for h in doc["history"]] == [oci.EPOCH, oci.EPOCH]
    assert doc["config"] == {
        "Entrypoint": ["/usr/bin/python3", "-m", "serve"],
        "Cmd": ["--port", "8080"],
        "Env": ["A=1", "B=2"],
        "ExposedPorts": {"8080/tcp": {}, "9090/udp": {}},
        "Labels": {"org.opencontainers.image.title": "resnet"},
        "WorkingDir": "/srv",
        "User": "1000:1000",
    }
    again = oci.image_config(
        ARMV7,
        [D1, D2],
        ["/usr/bin/python3", "-m", "serve"],
        ["--port", "8080"],
        {"A": "1", "B": "2"},
        ["9090/udp", 8080],
        {"org.opencontainers.image.title": "resnet"},
        "/srv",
        "1000:1000",
    )
    assert again.digest == config.digest


def test_config_on_a_base_image_merges_like_a_dockerfile():
    base_blob = oci.image_config(
        ARM64, [D1], cmd=["bash"], env={"PATH": "/usr/bin", "LANG": "C"}, labels={"base": "debian"}
    )
    base = oci.parse_config(base_blob.data, expected_digest=base_blob.digest)
    assert base.platform == ARM64
    assert base.diff_ids == (D1,)
    doc = json.loads(
        oci.image_config(
            ARM64,
            [D2, D3],
            entrypoint=["serve"],
            env={"PATH": "/opt/bin"},
            labels={"model": "resnet"},
            base_config=base,
            history=["runtime", "model"],
        ).data
    )
    assert doc["rootfs"]["diff_ids"] == [D1, D2, D3]
    assert [h.get("created_by") for h in doc["history"]] == [
        "edgefleet layer 1",
        "runtime",
        "model",
    ]
    assert "Cmd" not in doc["config"]  # a new entrypoint resets the base's cmd
    assert doc["config"]["Env"] == ["LANG=C", "PATH=/opt/bin"]
    assert doc["config"]["Labels"] == {"base": "debian", "model": "resnet"}
    with pytest.raises(oci.OCIError, match="base image is for linux/arm64"):
        oci.image_config(AMD64, [D2], base_config=base)


def test_manifest_shape():
    config = oci.image_config(AMD64, [D1])
    layer = oci.build_layer([oci.FileEntry.file("a", b"a")])
    docker_layer = oci.Descriptor(oci.DOCKER_LAYER_GZIP, D2, 10)
    manifest = oci.image_manifest(config, [docker_layer, layer], {"org.example": "x"})
    doc = json.loads(manifest.data)
    assert manifest.data == oci.canonical_json(doc)
    assert doc == {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": config.digest, "size": config.size},
        "layers": [
            {"mediaType": oci.OCI_LAYER_GZIP, "digest": D2, "size": 10},
            {"mediaType": oci.OCI_LAYER_GZIP, "digest": layer.blob.digest, "size": layer.blob.size},
        ],
        "annotations": {"org.example": "x"},
    }
    parsed = oci.parse_manifest(manifest.data, oci.OCI_MANIFEST, manifest.digest)
    assert parsed.layers[1] == layer.descriptor()
    parsed.require_image()


def test_index_is_sorted_by_platform_and_rejects_duplicates():
    m1 = oci.Descriptor(oci.OCI_MANIFEST, D1, 100)
    m2 = oci.Descriptor(oci.OCI_MANIFEST, D2, 200)
    m3 = oci.Descriptor(oci.OCI_MANIFEST, D3, 300)
    index = oci.image_index([(m1, ARMV7), (m2, AMD64), (m3, ARM64)])
    again = oci.image_index([(m3, ARM64), (m1, ARMV7), (m2, AMD64)])
    assert index.digest == again.digest
    doc = json.loads(index.data)
    assert doc["mediaType"] == oci.OCI_INDEX
    assert doc["schemaVersion"] == 2
    assert [m["platform"] for m in doc["manifests"]] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        {"os": "linux", "architecture": "arm64"},
    ]
    parsed = oci.parse_index(index.data, oci.OCI_INDEX, index.digest)
    assert parsed.find(oci.Platform.parse("linux/arm64/v8")).digest == D3
    assert parsed.find(ARMV7).digest == D1
    with pytest.raises(oci.OCIError, match="no manifest for linux/ppc64le"):
        parsed.find(oci.Platform.parse("linux/ppc64le"))
    with pytest.raises(oci.OCIError, match="two manifests"):
        oci.image_index([(m1, ARM64), (m2, ARM64)])


def test_docker_schema2_documents_are_accepted_when_reading():
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": oci.DOCKER_MANIFEST,
            "config": {"mediaType": oci.DOCKER_CONFIG, "size": 7, "digest": D1},
            "layers": [{"mediaType": oci.DOCKER_LAYER_GZIP, "size": 9, "digest": D2}],
        }
    ).encode()
    parsed = oci.parse_image_document(manifest, oci.DOCKER_MANIFEST)
    assert isinstance(parsed, oci.ImageManifest)
    parsed.require_image()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": oci.DOCKER_MANIFEST_LIST,
            "manifests": [
                {
                    "mediaType": oci.DOCKER_MANIFEST,
                    "size": 5,
                    "digest": D3,
                    "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
                }
            ],
        }
    ).encode()
    parsed_index = oci.parse_image_document(index, oci.DOCKER_MANIFEST_LIST)
    assert isinstance(parsed_index, oci.ImageIndex)
    assert parsed_index.find(ARMV7).digest == D3


def _manifest(**changes) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "size": 7, "digest": D1},
        "layers": [{"mediaType": oci.OCI_LAYER_GZIP, "size": 9, "digest": D2}],
    }
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "media_type", "message"),
    [
        (_manifest(mediaType=oci.OCI_INDEX), None, "not one of"),
        (_manifest(), oci.DOCKER_MANIFEST, "was served as"),
        (_manifest(mediaType=None), None, "not one of"),
        (_manifest(schemaVersion=1), None, "schemaVersion"),
        (
            _manifest(layers=[{"mediaType": oci.OCI_LAYER_GZIP, "size": 9, "digest": "md5:x"}]),
            None,
            "not a digest",
        ),
        (
            _manifest(layers=[{"mediaType": oci.OCI_LAYER_GZIP, "size": -1, "digest": D2}]),
            None,
            "out of range",
        ),
        (
            _manifest(layers=[{"mediaType": oci.OCI_LAYER_GZIP, "size": 10**15, "digest": D2}]),
            None,
            "out of range",
        ),
        (
            _manifest(layers=[{"mediaType": oci.OCI_LAYER_GZIP, "size": "9", "digest": D2}]),
            None,
            "not an integer",
        ),
        (_manifest(layers={}), None, "must be a list"),
        (_manifest(annotations={"a": 1}), None, "annotations"),
        (b'{"schemaVersion":2,"schemaVersion":2}', None, "duplicate"),
        (b"[]", None, "JSON object"),
        (b"\xff", None, "not valid JSON"),
        (b" " * (oci.MAX_MANIFEST_SIZE + 1), None, "limit"),
    ],
)
def test_bad_manifests_are_rejected(data, media_type, message):
    with pytest.raises(oci.OCIError, match=message):
        oci.parse_manifest(data, media_type)


def test_digest_of_what_was_read_is_checked():
    with pytest.raises(oci.OCIError, match="expected"):
        oci.parse_manifest(_manifest(), oci.OCI_MANIFEST, expected_digest=D3)
    with pytest.raises(oci.OCIError, match="expected"):
        oci.parse_config(oci.image_config(AMD64, [D1]).data, expected_digest=D3)


def test_non_image_manifests_fail_require_image():
    sig = _manifest(
        layers=[
            {
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "size": 9,
                "digest": D2,
            }
        ]
    )
    with pytest.raises(oci.OCIError, match="layer of type"):
        oci.parse_manifest(sig).require_image()


def test_bad_configs_are_rejected():
    for doc, message in [
        ({"os": "linux", "architecture": "amd64"}, "rootfs"),
        (
            {
                "os": "linux",
                "architecture": "amd64",
                "rootfs": {"type": "layers", "diff_ids": ["x"]},
            },
            "diff ID",
        ),
        ({"rootfs": {"type": "layers", "diff_ids": []}}, "must be strings"),
    ]:
        with pytest.raises(oci.OCIError, match=message):
            oci.parse_config(json.dumps(doc).encode())
