"""Builds, pushes and signs the images of one InferenceModel, without a Docker daemon.

For each target platform: take the base image for that platform from a multi-arch
index in the registry, add the runtime layer (platform wheels + the inference
server, cached on disk by its inputs) and the model layer (streamed from the weights
file, cached by the weights' sha256), write config and manifest
(:mod:`edgefleet.domain.modelimage`), push only the blobs the registry lacks, sign
the manifest; then push and sign the image index.

Each build talks to the registry through its own metered view
(:meth:`RegistryClient.metered`), so concurrent builds report their own byte counts.
Failures raise typed errors (:class:`BuildError`, or registry/OCI errors) that
:func:`edgefleet.domain.failures.classify` maps to a condition reason.
The drift check of a finished build (:meth:`ImageBuilder.verify`) is
:mod:`edgefleet.clients.imagedrift`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.api.conditions import Reason
from edgefleet.api.inferencemodel import InferenceModelSpec, InferenceModelStatus
from edgefleet.clients import (
    baseimage,
    imagedrift,
    modelsource,
    modelvariants,
    optimizer,
    runtimecache,
    signer,
    wheels,
)
from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.registry_errors import RegistryError
from edgefleet.domain import modelimage, oci, runtime_pins, signing
from edgefleet.domain.failures import FailureError, in_context

__all__ = ["BuildError", "BuildResult", "BuilderSettings", "ImageBuilder", "PlatformImage"]

Progress = Callable[[str], None]


class BuildError(FailureError):
    """A build that failed; ``reason`` is the condition reason, ``permanent`` means
    only a change of the spec (or of the registry's content) can help."""


@dataclass(frozen=True)
class BuilderSettings:
    """Where images go and where the builder keeps its caches."""

    cache_dir: Path
    repository_prefix: str = "edgefleet/models"
    base_repository: str = "edgefleet/base"
    base_reference: str = "bookworm"
    max_model_bytes: int = modelsource.DEFAULT_MAX_MODEL_BYTES
    max_concurrent_builds: int = 2


@dataclass(frozen=True)
class PlatformImage:
    platform: str
    digest: str
    size_bytes: int
    model_layer_bytes: int
    build_seconds: float
    signature: str
    quantization: str = "None"
    optimized: optimizer.OptimizedModel | None = None


@dataclass(frozen=True)
class BuildResult:
    repository: str
    index_digest: str
    index_signature: str
    images: tuple[PlatformImage, ...]
    weights_sha256: str
    bytes_uploaded: int  # by this build only, even with others running at once
    blobs_uploaded: list[str] = field(default_factory=list)


class ImageBuilder:
    """Turns an InferenceModel spec into signed images in one registry."""

    def __init__(
        self,
        registry: RegistryClient,
        signing_key: ec.EllipticCurvePrivateKey,
        settings: BuilderSettings,
        *,
        http: httpx.Client,
        registry_for: Callable[[str], RegistryClient] | None = None,
        runtime_layers: runtimecache.RuntimeLayerCache | None = None,
    ) -> None:
        self._registry = registry
        self._key = signing_key
        self._settings = settings
        self._http = http
        self._registry_for = registry_for
        self._slots = threading.BoundedSemaphore(settings.max_concurrent_builds)
        self._runtime_layers = runtime_layers or runtimecache.RuntimeLayerCache(settings.cache_dir)

    # -- planning ----------------------------------------------------------------------
    def _base_index(self, reg: RegistryClient) -> tuple[oci.ImageIndex, str]:
        repo, ref = self._settings.base_repository, self._settings.base_reference
        try:
            data, media_type, digest = reg.get_manifest(repo, ref)
            return oci.parse_index(data, media_type, expected_digest=digest), digest
        except (RegistryError, oci.OCIError) as exc:
            raise in_context(exc, f"base image index {repo}:{ref}") from exc

    def build_key(self, spec: InferenceModelSpec) -> str:
        """The cache key of a build of ``spec`` (cheap: reads only the base index)."""
        runtimes: dict[str, str] = {p: _runtime(p).cache_key() for p in spec.platforms}
        _, base_digest = self._base_index(self._registry)
        return modelimage.build_key(
            spec.wire(),
            base_index=base_digest,
            runtime_keys=runtimes,
            serving_sources=wheels.serving_sources(),
        )

    def verify(self, status: InferenceModelStatus) -> list[str]:
        """What of ``status``'s build is missing from the registry (empty: nothing);
        see :func:`edgefleet.clients.imagedrift.missing`."""
        return imagedrift.missing(self._registry, status)

    # -- building ----------------------------------------------------------------------
    def build(
        self, namespace: str, name: str, spec: InferenceModelSpec, progress: Progress | None = None
    ) -> BuildResult:
        """Build, push and sign every platform's image and the index."""
        say = progress or (lambda _m: None)
        for platform in spec.platforms:
            _runtime(platform)  # fail before any download for an unsupported platform
        with self._slots:
            return self._build(namespace, name, spec, say, self._registry.metered())

    def _build(
        self,
        namespace: str,
        name: str,
        spec: InferenceModelSpec,
        say: Progress,
        reg: RegistryClient,
    ) -> BuildResult:
        model = self._weights(spec, reg)
        say(f"weights {model.sha256[:12]} ({model.size} bytes)")
        try:
            variants = modelvariants.prepare_variants(spec, model, self._settings.cache_dir, say)
        except optimizer.OptimizationError as exc:
            raise BuildError(Reason.BUILD_FAILED, str(exc), permanent=True) from exc
        source = spec.source.url.url if spec.source.url else spec.source.oci.reference  # type: ignore[union-attr]
        repo = modelimage.repository_for(self._settings.repository_prefix, namespace, name)
        index, _ = self._base_index(reg)
        images: list[PlatformImage] = []
        entries: list[tuple[oci.Descriptor, oci.Platform]] = []
        for platform in spec.platforms:
            variant = variants[platform]
            meta = modelimage.ModelMeta(
                namespace,
                name,
                spec.version,
                variant.weights_sha256,
                source,
                threads=spec.runtime.threads,
            )
            image, desc = self._build_platform(reg, repo, platform, index, variant, meta, say)
            images.append(image)
            entries.append((desc, oci.Platform.parse(platform)))
        index_blob = oci.image_index(
            entries,
            annotations={
                "org.opencontainers.image.title": name,
                "org.opencontainers.image.version": spec.version,
            },
        )
        reg.ensure_manifest(repo, index_blob.digest, index_blob)
        reg.ensure_manifest(repo, spec.version, index_blob)
        tag = self._sign(reg, repo, index_blob.digest)
        say(f"index {repo}@{index_blob.digest} signed")
        stats = reg.snapshot()
        return BuildResult(
            repository=f"{reg.host}/{repo}",
            index_digest=index_blob.digest,
            index_signature=f"{reg.host}/{repo}:{tag}",
            images=tuple(images),
            weights_sha256=model.sha256,
            bytes_uploaded=stats.bytes_uploaded,
            blobs_uploaded=stats.uploaded_digests,
        )

    def _source_registry(self, reg: RegistryClient) -> Callable[[str], RegistryClient]:
        def registry_for(host: str) -> RegistryClient:
            if self._registry_for is not None:
                return self._registry_for(host)
            if host != reg.host:
                raise modelsource.ModelSourceError(
                    f"OCI model sources must be in the operator's registry {reg.host},"
                    f" not {host} (the operator has no credentials or CA for it)",
                    permanent=True,
                )
            return reg

        return registry_for

    def _weights(self, spec: InferenceModelSpec, reg: RegistryClient) -> modelsource.ModelFile:
        try:
            return modelsource.fetch_model(
                spec.source,
                self._settings.cache_dir / "models",
                http=self._http,
                registry_for=self._source_registry(reg),
                max_bytes=self._settings.max_model_bytes,
            )
        except FailureError as exc:
            raise _build_error(exc) from exc
        except (RegistryError, oci.OCIError) as exc:
            raise _build_error(in_context(exc, "model source")) from exc

    def _sign(self, reg: RegistryClient, repo: str, digest: str) -> str:
        try:
            return signer.sign_and_push(reg, repo, digest, self._key).tag
        except oci.OCIError as exc:
            raise BuildError(
                Reason.SIGNING_FAILED,
                f"the existing signature manifest {repo}:{signing.signature_tag(digest)}"
                f" is unreadable ({exc}); delete that tag so the image can be signed again",
                permanent=True,
            ) from exc

    def _build_platform(
        self,
        reg: RegistryClient,
        repo: str,
        platform: str,
        index: oci.ImageIndex,
        variant: modelvariants.ModelVariant,
        meta: modelimage.ModelMeta,
        say: Progress,
    ) -> tuple[PlatformImage, oci.Descriptor]:
        start = time.monotonic()
        base_repo = self._settings.base_repository
        try:
            base, base_config = baseimage.platform_base(reg, base_repo, index, platform)
        except (RegistryError, oci.OCIError) as exc:
            raise in_context(exc, f"base image for {platform}") from exc
        runtime = self._runtime_layers.layer(_runtime(platform))
        model = variant.layer
        parts = modelimage.assemble(base_config, base.layers, runtime, model, meta)
        baseimage.copy_base_layers(reg, base_repo, repo, base.layers)
        reg.push_blob(repo, runtime.blob)
        reg.push_blob(repo, model.blob)
        reg.push_blob(repo, parts.config)
        reg.ensure_manifest(repo, parts.manifest.digest, parts.manifest)
        tag = self._sign(reg, repo, parts.manifest.digest)
        seconds = time.monotonic() - start
        size = sum(d.size for d in base.layers) + runtime.blob.size + model.blob.size
        say(f"{platform}: {repo}@{parts.manifest.digest} ({size} bytes) in {seconds:.1f}s")
        image = PlatformImage(
            platform,
            parts.manifest.digest,
            size,
            model.blob.size,
            round(seconds, 3),
            f"{reg.host}/{repo}:{tag}",
            variant.quantization,
            variant.optimized,
        )
        return image, parts.manifest.descriptor()


def _build_error(failure: FailureError) -> BuildError:
    return BuildError(failure.reason, failure.message, permanent=failure.permanent)


def _runtime(platform: str) -> runtime_pins.RuntimePins:
    found = runtime_pins.runtime_for(platform)
    if isinstance(found, runtime_pins.UnsupportedPlatform):
        raise BuildError(Reason.UNSUPPORTED_PLATFORM, found.message, permanent=True)
    return found
