"""Build failures against the real registry end in the right typed failure.

The fault table in tests/unit/test_model_reconcile_faults.py covers every fault with
the fake registry; here the ones a real registry can produce: wrong credentials (401,
permanent), a base image that is not there (404, temporary), a registry that is down
(connection refused, temporary), an OCI source in a registry the operator has no
credentials for (permanent), and a damaged signature manifest (SigningFailed).
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from edgefleet.api.conditions import Reason
from edgefleet.api.inferencemodel import InferenceModelSpec
from edgefleet.clients.imagebuilder import BuilderSettings, ImageBuilder
from edgefleet.clients.registry import RegistryClient
from edgefleet.domain import oci, signing
from edgefleet.domain.failures import Failure, classify
from edgefleet.testing.models import make_mlp
from edgefleet.testing.procs import free_port
from edgefleet.testing.registry import LocalRegistry, registry_unavailable
from tests.conftest import BASE_REPO, BASE_TAG


def _spec(url: str, sha: str) -> InferenceModelSpec:
    return InferenceModelSpec.model_validate(
        {
            "version": "1.0.0",
            "platforms": ["linux/amd64"],
            "source": {"url": {"url": url, "sha256": sha}},
        }
    )


def _failure(call) -> Failure:
    with pytest.raises(Exception) as err:  # noqa: PT011 - any exception: classify decides
        call()
    return classify(err.value)


@pytest.fixture
def weights(model_files):
    directory, base_url = model_files
    name = f"failures-{uuid.uuid4().hex[:8]}.onnx"
    fixture = make_mlp(directory / name, target_bytes=16 * 1024, seed=31)
    return f"{base_url}/{name}", fixture.sha256


def _builder(client: RegistryClient, cache, reference: str = BASE_TAG) -> ImageBuilder:
    settings = BuilderSettings(cache_dir=cache, base_repository=BASE_REPO, base_reference=reference)
    return ImageBuilder(client, signing.generate_key(), settings, http=httpx.Client(timeout=30))


def test_wrong_credentials_are_permanent_access_denied(builder_cache, weights):
    if (why := registry_unavailable(auth=True)) is not None:
        pytest.skip(why)
    with (
        LocalRegistry(auth=True) as reg,
        RegistryClient(reg.url, ca_bundle=reg.ca_path, username="edgefleet", password="wrong") as c,
    ):
        failure = _failure(lambda: _builder(c, builder_cache).build_key(_spec(*weights)))
    assert (failure.reason, failure.permanent) == (Reason.REGISTRY_ACCESS_DENIED, True)
    assert "wrong" not in failure.message


def test_a_missing_base_image_is_a_temporary_registry_error(
    registry_client, base_index, builder_cache, weights
):
    builder = _builder(registry_client, builder_cache, reference="no-such-tag")
    failure = _failure(lambda: builder.build_key(_spec(*weights)))
    assert (failure.reason, failure.permanent) == (Reason.REGISTRY_ERROR, False)
    assert "404" in failure.message


def test_a_registry_that_is_down_is_temporary(builder_cache, weights, registry):
    down = f"https://127.0.0.1:{free_port()}"
    with RegistryClient(down, ca_bundle=registry.ca_path, retries=0) as c:
        failure = _failure(lambda: _builder(c, builder_cache).build_key(_spec(*weights)))
    assert (failure.reason, failure.permanent) == (Reason.REGISTRY_ERROR, False)


def test_an_oci_source_elsewhere_is_permanent(registry_client, base_index, builder_cache):
    spec = InferenceModelSpec.model_validate(
        {
            "version": "1.0.0",
            "platforms": ["linux/amd64"],
            "source": {"oci": {"reference": "registry.example.com/m/x@sha256:" + "a" * 64}},
        }
    )
    builder = _builder(registry_client, builder_cache)
    failure = _failure(lambda: builder.build("tests", "elsewhere", spec))
    assert (failure.reason, failure.permanent) == (Reason.SOURCE_UNAVAILABLE, True)
    assert "registry.example.com" in failure.message


def test_a_damaged_signature_manifest_is_signing_failed(
    registry_client, base_index, builder_cache, weights
):
    builder = _builder(registry_client, builder_cache)
    name = f"sig-{uuid.uuid4().hex[:8]}"
    first = builder.build("tests", name, _spec(*weights))
    repo = first.repository.split("/", 1)[1]
    # An index where a signature manifest should be: the registry accepts it (it refers
    # to a manifest that exists), the signer cannot parse it as a signature.
    platform = oci.Platform.parse("linux/amd64")
    data, media_type, _ = registry_client.get_manifest(repo, first.images[0].digest)
    desc = oci.Descriptor(media_type, first.images[0].digest, len(data))
    damaged = oci.image_index([(desc, platform)])
    registry_client.put_manifest(repo, signing.signature_tag(first.index_digest), damaged)
    failure = _failure(lambda: builder.build("tests", name, _spec(*weights)))
    assert (failure.reason, failure.permanent) == (Reason.SIGNING_FAILED, True)
    assert signing.signature_tag(first.index_digest) in failure.message
