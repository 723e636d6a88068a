"""A whole InferenceModel reconcile in memory, for unit tests: the stateful fake
registry behind an injected transport (with injectable faults), weights served by an
httpx MockTransport, a stand-in runtime layer, and a status store in place of the API
server. Integration and e2e tests use the real registry and API server instead."""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from edgefleet.clients.imagebuilder import BuilderSettings, ImageBuilder
from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.runtimecache import RuntimeLayerCache
from edgefleet.domain import oci, signing
from edgefleet.handlers.inferencemodel import ModelReconciler
from tests.unit.registry_fake import BASE, FakeRegistry

BASE_REPO, BASE_TAG = "edgefleet/base", "bookworm"
MODELS = "http://models.test"

#: A fault: given a request, a response to send instead (or an exception to raise).
Fault = Callable[[httpx.Request], httpx.Response | None]


def status_error(status: int, code: str) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.startswith("/v2/edgefleet/models/"):
            return httpx.Response(status, json={"errors": [{"code": code, "message": code}]})
        return None

    return fault


def timeout(request: httpx.Request) -> httpx.Response | None:
    if request.url.path.startswith("/v2/edgefleet/models/"):
        raise httpx.ReadTimeout("timed out", request=request)
    return None


@dataclass
class Objects:
    """Stands in for the API server's status subresource (CustomObjectsApi's one call)."""

    status: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def patch_namespaced_custom_object_status(
        self, group: str, version: str, ns: str, plural: str, name: str, body: dict[str, Any]
    ) -> None:
        self.status[(ns, name)] = copy.deepcopy(body["status"])

    def condition(self, ns: str, name: str, type_: str) -> dict[str, Any]:
        conditions = self.status[(ns, name)]["conditions"]
        return next(c for c in conditions if c["type"] == type_)


def runtime_entries(platform: str, _cache: Path) -> list[oci.FileEntry]:
    return [oci.FileEntry.file("opt/edgefleet/runtime/server.py", f"# {platform}\n".encode())]


@dataclass
class World:
    """The fake registry with a base image, a weights server, a builder and a reconciler."""

    tmp: Path
    entries: Callable[[str, Path], list[oci.FileEntry]] = runtime_entries
    fake: FakeRegistry = field(default_factory=FakeRegistry)
    faults: list[Fault] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    on_download: Callable[[], None] = lambda: None
    objects: Objects = field(default_factory=Objects)
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.registry = RegistryClient(
            BASE, transport=httpx.MockTransport(self._registry), sleep=lambda _s: None
        )
        self.http = httpx.Client(transport=httpx.MockTransport(self._models))
        push_base(self.registry)
        settings = BuilderSettings(
            cache_dir=self.tmp, base_repository=BASE_REPO, base_reference=BASE_TAG
        )
        self.builder = ImageBuilder(
            self.registry,
            signing.generate_key(),
            settings,
            http=self.http,
            runtime_layers=RuntimeLayerCache(self.tmp, entries=self.entries),
        )
        self.reconciler = ModelReconciler(self.builder, cast(Any, self.objects))

    def close(self) -> None:
        self.registry.close()
        self.http.close()

    def _registry(self, request: httpx.Request) -> httpx.Response:
        for fault in self.faults:
            response = fault(request)
            if response is not None:
                return response
        return self.fake.handle(request)

    def _models(self, request: httpx.Request) -> httpx.Response:
        data = self.files.get(request.url.path)
        if data is None:
            return httpx.Response(404)
        self.on_download()
        return httpx.Response(200, content=data)

    def weights(self, name: str, size: int) -> tuple[str, str]:
        data = random.Random(f"{name}-{size}").randbytes(size)  # noqa: S311 - test data, reproducible
        self.files[f"/{name}.onnx"] = data
        return f"{MODELS}/{name}.onnx", hashlib.sha256(data).hexdigest()

    def body(self, name: str, url: str, sha: str, generation: int = 1) -> dict[str, Any]:
        return {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": {"name": name, "namespace": "ns", "generation": generation},
            "spec": {
                "version": "1.0.0",
                "platforms": ["linux/amd64"],
                "source": {"url": {"url": url, "sha256": sha}},
            },
            "status": self.objects.status.get(("ns", name)),
        }

    def reconcile(self, body: dict[str, Any], **kwargs: Any) -> None:
        self.reconciler.reconcile(body, lambda *e: self.events.append(e), **kwargs)


def push_base(reg: RegistryClient, os_release: bytes = b"ID=debian\n") -> None:
    """A one-layer linux/amd64 base image under an index tagged ``bookworm``."""
    layer = oci.build_layer([oci.FileEntry.file("etc/os-release", os_release)])
    platform = oci.Platform.parse("linux/amd64")
    config = oci.image_config(platform, [layer.diff_id])
    manifest = oci.image_manifest(config, [layer])
    reg.push_blob(BASE_REPO, layer.blob)
    reg.push_blob(BASE_REPO, config)
    reg.put_manifest(BASE_REPO, manifest.digest, manifest)
    index = oci.image_index([(manifest.descriptor(), platform)])
    reg.put_manifest(BASE_REPO, BASE_TAG, index)
