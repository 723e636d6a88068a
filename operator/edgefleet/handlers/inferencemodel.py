"""InferenceModel reconcile: build, push and sign images; report it in status.

Level-based: one ``reconcile`` for create, update and resume. An unchanged build key
(a hash of every build input) means nothing to do, so restarts and re-deliveries
never rebuild; a build killed half-way is simply run again — content-addressed
pushes skip what already arrived and signatures are not duplicated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf
import structlog
from kubernetes import client

from edgefleet.api import GROUP, VERSION, InferenceModel
from edgefleet.api.conditions import Reason
from edgefleet.api.inferencemodel import BuiltImage, InferenceModelStatus
from edgefleet.clients.imagebuilder import BuildError, BuildResult, ImageBuilder, PlatformImage
from edgefleet.domain import modelstatus

__all__ = ["ModelReconciler", "register"]

PLURAL = "inferencemodels"
#: Transient failures retry after 10 s, 20 s, 40 s … at most 5 minutes apart.
RETRY_BASE, RETRY_MAX = 10.0, 300.0


def retry_delay(retry: int) -> float:
    """Seconds before the next attempt after ``retry`` failed ones (exponential, capped)."""
    return float(min(RETRY_MAX, RETRY_BASE * 2 ** min(retry, 10)))


log = structlog.get_logger("edgefleet.inferencemodel")

#: Posts a Kubernetes Event about the object: (type, reason, message).
EventSink = Callable[[str, str, str], None]


@dataclass
class ModelReconciler:
    """Reconciles one InferenceModel at a time (kopf serialises per object)."""

    builder: ImageBuilder
    objects: client.CustomObjectsApi

    def _write_status(self, namespace: str, name: str, status: InferenceModelStatus) -> None:
        # Merge patch of the status subresource: controllers never touch spec.
        self.objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status.wire()}
        )

    def reconcile(self, body: dict[str, Any], event: EventSink, retry: int = 0) -> None:
        model = InferenceModel.model_validate(_strip_runtime_fields(body))
        ns, name = model.metadata.namespace or "default", model.metadata.name
        generation = model.metadata.generation or 0
        bound = log.bind(namespace=ns, name=name, generation=generation)
        try:
            key = self.builder.build_key(model.spec)
        except BuildError as err:
            self._fail(event, ns, name, model.status, generation, err, retry)
            return
        if modelstatus.is_current(model.status, key):
            if model.status is not None and model.status.observed_generation != generation:
                self._write_status(
                    ns, name, model.status.model_copy(update={"observed_generation": generation})
                )
            bound.info("up to date", build_key=key)
            return
        building = modelstatus.building(model.status, generation=generation, build_key=key)
        self._write_status(ns, name, building)
        event(
            "Normal",
            Reason.BUILDING,
            f"building {model.spec.version} for {', '.join(model.spec.platforms)}",
        )
        bound.info("build started", build_key=key, platforms=model.spec.platforms)
        try:
            result = self.builder.build(
                ns, name, model.spec, progress=lambda m: bound.info("build progress", step=m)
            )
        except BuildError as err:
            self._fail(event, ns, name, building, generation, err, retry)
            return
        self._write_status(ns, name, _succeeded(model, generation, key, result))
        event("Normal", Reason.BUILD_SUCCEEDED, f"{result.repository}@{result.index_digest} signed")
        bound.info(
            "build succeeded", index=result.index_digest, bytes_uploaded=result.bytes_uploaded
        )

    def _fail(
        self,
        event: EventSink,
        ns: str,
        name: str,
        status: InferenceModelStatus | None,
        generation: int,
        err: BuildError,
        retry: int,
    ) -> None:
        self._write_status(
            ns,
            name,
            modelstatus.failed(
                status,
                generation=generation,
                reason=err.reason,
                message=err.message,
                permanent=err.permanent,
            ),
        )
        event("Warning", err.reason, err.message)
        log.warning(
            "build failed",
            namespace=ns,
            name=name,
            reason=err.reason,
            message=err.message,
            permanent=err.permanent,
        )
        if not err.permanent:
            raise kopf.TemporaryError(err.message, delay=retry_delay(retry))


def _succeeded(
    model: InferenceModel, generation: int, key: str, result: BuildResult
) -> InferenceModelStatus:
    images = [BuiltImage.model_validate(_image_status(i)) for i in result.images]
    return modelstatus.succeeded(
        model.status,
        generation=generation,
        build_key=key,
        version=model.spec.version,
        repository=result.repository,
        index_digest=result.index_digest,
        images=images,
    )


def _image_status(image: PlatformImage) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "platform": image.platform,
        "digest": image.digest,
        "size_bytes": image.size_bytes,
        "model_layer_bytes": image.model_layer_bytes,
        "build_seconds": image.build_seconds,
        "signature": image.signature,
    }
    if image.optimized is not None:
        opt = image.optimized
        doc["optimization"] = {
            "quantization": image.quantization,
            "weights_bytes": len(opt.weights),
            "original_weights_bytes": opt.original_bytes,
            "probe_max_abs_error": opt.probe_max_abs_error,
            "probe_passes": opt.probe_passes,
            "latency_ratio": opt.latency_ratio,
        }
    return doc


def _strip_runtime_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The object as the API model sees it (kopf's body is a read-only mapping)."""
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": dict(body["metadata"]),
        "spec": dict(body["spec"]),
        "status": {k: v for k, v in dict(body.get("status") or {}).items() if k != "kopf"} or None,
    }


def register(registry: kopf.OperatorRegistry, reconciler: ModelReconciler) -> None:
    """Register the InferenceModel handlers on ``registry``."""

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
    def reconcile_model(body: kopf.Body, retry: int, **_: Any) -> None:
        def event(type_: str, reason: str, message: str) -> None:
            kopf.event(body, type=type_, reason=reason, message=message)

        reconciler.reconcile(_plain(body), event, retry)


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A deep, JSON-safe copy of kopf's read-only view of the object."""
    copied: dict[str, Any] = json.loads(json.dumps(dict(body)))
    return copied
