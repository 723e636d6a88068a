"""Daemonless builds of model images into a real registry: reproducible, minimal
re-sends, clear failures, and images that really run (amd64, and arm64 under qemu)."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from edgefleet.api.conditions import Reason
from edgefleet.api.inferencemodel import InferenceModelSpec
from edgefleet.api.inferencemodel_parts import Optimization
from edgefleet.clients.imagebuilder import BuildError
from edgefleet.domain import oci
from edgefleet.testing.models import ModelFixture, make_mlp
from edgefleet.testing.procs import free_port, wait_until

TINY = 64 * 1024


def _model(model_files, seed: int, size: int = TINY) -> tuple[ModelFixture, str]:
    directory, base_url = model_files
    path = directory / f"model-{uuid.uuid4().hex[:8]}.onnx"
    fixture = make_mlp(path, target_bytes=size, seed=seed)
    return fixture, f"{base_url}/{path.name}"


def _spec(url: str, sha: str, platforms=("linux/amd64", "linux/arm64"), version="1.0.0"):
    return InferenceModelSpec.model_validate(
        {
            "version": version,
            "platforms": list(platforms),
            "source": {"url": {"url": url, "sha256": sha}},
        }
    )


def _name() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def test_same_inputs_give_same_digests_and_nothing_is_resent(builder, model_files):
    fixture, url = _model(model_files, seed=1)
    name = _name()
    first = builder.build("tests", name, _spec(url, fixture.sha256))
    second = builder.build("tests", name, _spec(url, fixture.sha256))
    assert first.index_digest == second.index_digest
    assert [i.digest for i in first.images] == [i.digest for i in second.images]
    assert second.blobs_uploaded == []
    assert second.bytes_uploaded == 0, "a rebuild of the same inputs sends nothing"
    assert {i.platform for i in first.images} == {"linux/amd64", "linux/arm64"}


def test_weights_only_update_resends_only_the_model_layer(builder, registry_client, model_files):
    old, old_url = _model(model_files, seed=2)
    new, new_url = _model(model_files, seed=3)
    name = _name()
    first = builder.build("tests", name, _spec(old_url, old.sha256))
    second = builder.build("tests", name, _spec(new_url, new.sha256, version="1.0.1"))
    assert second.index_digest != first.index_digest
    repo = second.repository.split("/", 1)[1]
    layers = {}
    for image in second.images:
        data, media_type, _ = registry_client.get_manifest(repo, image.digest)
        manifest = oci.parse_manifest(data, media_type)
        layers[image.platform] = manifest
    model_layers = {m.layers[-1].digest for m in layers.values()}
    assert len(model_layers) == 1, "one model layer shared by every platform"
    configs = {m.config.digest for m in layers.values()}
    shared = {d.digest for m in layers.values() for d in m.layers[:-1]}
    uploaded = set(second.blobs_uploaded)
    assert model_layers <= uploaded
    assert configs <= uploaded
    assert not (shared & uploaded), "base and runtime layers must not be re-sent"
    # Whatever else went up is signature material (payloads and signature configs).
    model_layer_size = layers["linux/amd64"].layers[-1].size
    assert second.bytes_uploaded < model_layer_size + 64 * 1024


def test_source_hash_mismatch_fails_before_anything_is_pushed(
    builder, registry_client, model_files
):
    fixture, url = _model(model_files, seed=4)
    before = registry_client.snapshot()
    with pytest.raises(BuildError) as err:
        builder.build("tests", _name(), _spec(url, "0" * 64))
    assert err.value.reason == Reason.SOURCE_DIGEST_MISMATCH
    assert fixture.sha256 in err.value.message
    assert err.value.permanent
    after = registry_client.snapshot()
    assert after.bytes_uploaded == before.bytes_uploaded


def test_armv7_names_the_missing_runtime(builder, model_files):
    fixture, url = _model(model_files, seed=5)
    with pytest.raises(BuildError) as err:
        builder.build("tests", _name(), _spec(url, fixture.sha256, platforms=("linux/arm/v7",)))
    assert err.value.reason == Reason.UNSUPPORTED_PLATFORM
    assert "onnxruntime" in err.value.message
    assert err.value.permanent


def _trust_registry_in_docker(registry) -> Path:
    certs = Path("/etc/docker/certs.d") / registry.host
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copy(registry.ca_path, certs / "ca.crt")
    return certs


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("platform", "quantization"),
    [
        ("linux/amd64", "None"),
        ("linux/arm64", "None"),
        ("linux/amd64", "Int8Dynamic"),
        pytest.param(
            "linux/arm64",
            "Int8Dynamic",
            marks=pytest.mark.xfail(
                strict=True,
                reason="int8 MatMulInteger on arm64 onnxruntime 1.27 under qemu-user answers"
                " wrongly (max error 2.5; the same model on amd64 with 1.27 or 1.32: 0.015);"
                " not yet known whether real arm64 hardware is affected",
            ),
        ),
    ],
)
def test_built_image_runs_and_answers_the_probe(
    builder, registry, docker_engine, model_files, platform, quantization
):
    fixture, url = _model(model_files, seed=6)
    spec = _spec(url, fixture.sha256).model_copy(
        update={"optimizations": [Optimization(platforms=[platform], quantization=quantization)]}
    )
    result = builder.build("tests", _name(), spec)
    reference = f"{result.repository}@{result.index_digest}"
    certs = _trust_registry_in_docker(registry)
    port = free_port()
    container = f"edgefleet-test-{uuid.uuid4().hex[:8]}"
    try:
        docker_engine.docker("pull", "--platform", platform, reference, timeout=600)
        docker_engine.docker(
            "run",
            "-d",
            "--name",
            container,
            "--network",
            "host",
            "--pull",
            "never",
            "--platform",
            platform,
            "-e",
            f"EDGEFLEET_PORT={port}",
            "-e",
            "EDGEFLEET_BIND=127.0.0.1",
            reference,
            timeout=120,
        )
        arch = docker_engine.docker("exec", container, "uname", "-m", timeout=60).stdout.decode()
        assert arch.strip() == {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}[platform]
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: _status(f"{base}/healthz") == 200,
            timeout=180,
            what=f"{platform} model server health",
        )
        body = json.dumps(fixture.probe_request()).encode()
        request = urllib.request.Request(  # noqa: S310 - our server on 127.0.0.1
            f"{base}/v1/predict",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            answer = json.loads(response.read())
        if quantization == "None":
            assert fixture.matches(answer["outputs"]), answer
        else:  # int8 weights: close to the float answer, not equal
            got = np.asarray(answer["outputs"][fixture.output_name], dtype=np.float32)
            assert np.max(np.abs(got - fixture.expected_output)) < 0.05, answer
    finally:
        subprocess.run(
            [docker_engine.client, "rm", "-f", container], capture_output=True, check=False
        )
        subprocess.run(
            [docker_engine.client, "image", "rm", "-f", reference], capture_output=True, check=False
        )
        shutil.rmtree(certs, ignore_errors=True)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return 0


def test_model_from_an_oci_artifact(builder, registry, registry_client, model_files):
    """ORAS-style: an artifact manifest whose one layer is the ONNX file, pinned by digest."""
    fixture, _ = _model(model_files, seed=8)
    repo = f"artifacts/{_name()}"
    weights = oci.Blob(fixture.path.read_bytes(), "application/vnd.onnx.model")
    empty = oci.Blob(b"{}", "application/vnd.oci.empty.v1+json")
    for blob in (weights, empty):
        registry_client.push_blob(repo, blob)
    manifest = oci.Blob(
        oci.canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": oci.OCI_MANIFEST,
                "artifactType": "application/vnd.onnx.model",
                "config": empty.descriptor().to_json(),
                "layers": [weights.descriptor().to_json()],
            }
        ),
        oci.OCI_MANIFEST,
    )
    registry_client.put_manifest(repo, manifest.digest, manifest)
    spec = InferenceModelSpec.model_validate(
        {
            "version": "1.0.0",
            "platforms": ["linux/amd64"],
            "source": {
                "oci": {
                    "reference": f"{registry.host}/{repo}@{manifest.digest}",
                    "layerMediaType": "application/vnd.onnx.model",
                }
            },
        }
    )
    result = builder.build("tests", _name(), spec)
    assert result.weights_sha256 == fixture.sha256
    assert [i.platform for i in result.images] == ["linux/amd64"]
    # A reference to another registry is refused with a clear message, nothing fetched.
    other = spec.model_copy(deep=True)
    assert other.source.oci is not None
    other.source.oci.reference = f"registry.example.com/{repo}@{manifest.digest}"
    with pytest.raises(BuildError) as err:
        builder.build("tests", _name(), other)
    assert "operator's registry" in err.value.message


def test_int8_quantisation_for_one_platform(builder, registry_client, model_files):
    fixture, url = _model(model_files, seed=9, size=1_000_000)
    spec = InferenceModelSpec.model_validate(
        {
            "version": "1.0.0",
            "platforms": ["linux/amd64", "linux/arm64"],
            "source": {"url": {"url": url, "sha256": fixture.sha256}},
            "optimizations": [{"platforms": ["linux/arm64"], "quantization": "Int8Dynamic"}],
            "probe": fixture.probe_spec(tolerance=0.05),
        }
    )
    name = _name()
    first = builder.build("tests", name, spec)
    by_platform = {i.platform: i for i in first.images}
    amd64, arm64 = by_platform["linux/amd64"], by_platform["linux/arm64"]
    assert amd64.optimized is None
    assert arm64.quantization == "Int8Dynamic"
    opt = arm64.optimized
    assert opt is not None
    assert len(opt.weights) < opt.original_bytes / 2, "int8 weights are much smaller"
    assert opt.probe_max_abs_error is not None
    assert opt.probe_max_abs_error < 0.05
    assert opt.probe_passes is True
    assert arm64.model_layer_bytes < amd64.model_layer_bytes
    # The server in the image is told the quantised file's hash, so it can verify it.
    repo = first.repository.split("/", 1)[1]
    data, media_type, _ = registry_client.get_manifest(repo, arm64.digest)
    config_digest = oci.parse_manifest(data, media_type).config.digest
    config = oci.parse_config(registry_client.get_blob(repo, config_digest))
    env = dict(e.split("=", 1) for e in config.document["config"]["Env"])
    assert env["EDGEFLEET_MODEL_SHA256"] == opt.sha256
    # Quantisation is deterministic: the same inputs give the same digests, nothing sent.
    second = builder.build("tests", name, spec)
    assert [i.digest for i in second.images] == [i.digest for i in first.images]
    assert second.bytes_uploaded == 0
