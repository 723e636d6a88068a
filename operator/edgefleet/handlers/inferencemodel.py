"""InferenceModel reconcile: build, push and sign images; report it in status.

Follows the one reconcile pattern (:mod:`edgefleet.handlers.reconcile`): one
level-based ``reconcile`` for create, update, resume and the drift timer; status
computed by :mod:`edgefleet.domain.modelstatus` and always written on exit; every
failure typed by :func:`edgefleet.domain.failures.classify`.

An unchanged build key (a hash of every build input, base image digest included)
whose images are still in the registry means nothing to do, so restarts and
re-deliveries never rebuild; a build killed half-way is simply run again —
content-addressed pushes skip what already arrived and signatures are not
duplicated. The timer re-checks Ready models: a base image that moved changes the
key, and an image or signature missing from the registry is drift; both rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import kopf
import structlog
from kubernetes import client
from pydantic import ValidationError

from edgefleet.api import GROUP, VERSION, InferenceModel
from edgefleet.api.conditions import Reason
from edgefleet.api.inferencemodel import BuiltImage, InferenceModelStatus
from edgefleet.clients.imagebuilder import BuildResult, ImageBuilder, PlatformImage
from edgefleet.domain import modelstatus
from edgefleet.domain.failures import RETRY_BASE, RETRY_MAX, retry_delay
from edgefleet.handlers.reconcile import (
    EventSink,
    ObjectRef,
    Pass,
    status_writer,
    strip_runtime_fields,
)
from edgefleet.handlers.triggers import ObjectLocks, register_timer

__all__ = [
    "DRIFT_INTERVAL",
    "RETRY_BASE",
    "RETRY_MAX",
    "ModelReconciler",
    "register",
    "retry_delay",
]

PLURAL = "inferencemodels"
#: Seconds between drift checks of each Ready model.
DRIFT_INTERVAL = 600.0

log = structlog.get_logger("edgefleet.inferencemodel")


def _observed_status(body: dict[str, Any]) -> InferenceModelStatus | None:
    """The status as stored, or None when absent or unreadable (it is rewritten)."""
    try:
        return InferenceModelStatus.model_validate(strip_runtime_fields(body)["status"] or {})
    except (ValidationError, TypeError, ValueError):
        return None


@dataclass
class ModelReconciler:
    """Reconciles InferenceModels, one pass per object at a time."""

    builder: ImageBuilder
    objects: client.CustomObjectsApi
    locks: ObjectLocks = field(default_factory=ObjectLocks)

    def reconcile(
        self, body: dict[str, Any], event: EventSink, retry: int = 0, *, drift_check: bool = False
    ) -> None:
        """One pass. ``drift_check`` (the timer) only re-checks models that are Ready
        for their generation and skips an object another pass is working on."""
        ref = ObjectRef.of_body(body, PLURAL)  # never raises: everything else is in the pass
        with self.locks.hold(ref.namespace, ref.name, wait=not drift_check) as held:
            if not held:
                return
            observed = _observed_status(body)
            if drift_check and not modelstatus.last_build_ready(observed, ref.generation):
                return  # mid-build, failed or stalled: the change handlers own it
            with Pass(
                ref,
                observed,
                write=status_writer(self.objects, PLURAL),
                on_failure=modelstatus.from_failure,
                event=event,
                retry=retry,
            ) as p:
                self._pass(p, strip_runtime_fields(body))

    def _pass(self, p: Pass[InferenceModelStatus], plain: dict[str, Any]) -> None:
        model = InferenceModel.model_validate(plain)
        gen = p.generation
        key = self.builder.build_key(model.spec)
        if p.status is not None and modelstatus.is_current(p.status, key):
            problems = self.builder.verify(p.status)
            if not problems:
                p.status = modelstatus.up_to_date(p.status, generation=gen)
                p.log.info("up to date", build_key=key)
                return
            p.log.warning("drift detected", problems=problems)
            p.event("Warning", Reason.DRIFT_DETECTED, "; ".join(problems))
            p.status = modelstatus.drifted(p.status, generation=gen, problems=problems)
        p.status = modelstatus.building(p.status, generation=gen, build_key=key)
        p.checkpoint()
        p.event(
            "Normal",
            Reason.BUILDING,
            f"building {model.spec.version} for {', '.join(model.spec.platforms)}",
        )
        p.log.info("build started", build_key=key, platforms=model.spec.platforms)
        result = self.builder.build(
            p.ref.namespace,
            p.ref.name,
            model.spec,
            progress=lambda m: p.log.info("build progress", step=m),
        )
        p.status = _succeeded(p.status, model, gen, key, result)
        p.event(
            "Normal", Reason.BUILD_SUCCEEDED, f"{result.repository}@{result.index_digest} signed"
        )
        p.log.info(
            "build succeeded",
            index=result.index_digest,
            bytes_uploaded=result.bytes_uploaded,
            blobs_uploaded=len(result.blobs_uploaded),
        )


def _succeeded(
    status: InferenceModelStatus | None,
    model: InferenceModel,
    generation: int,
    key: str,
    result: BuildResult,
) -> InferenceModelStatus:
    images = [BuiltImage.model_validate(_image_status(i)) for i in result.images]
    return modelstatus.succeeded(
        status,
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


def register(
    registry: kopf.OperatorRegistry,
    reconciler: ModelReconciler,
    *,
    drift_interval: float = DRIFT_INTERVAL,
) -> None:
    """Register the InferenceModel handlers and the drift timer on ``registry``."""

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
    def reconcile_model(body: kopf.Body, retry: int, **_: Any) -> None:
        def event(type_: str, reason: str, message: str) -> None:
            kopf.event(body, type=type_, reason=reason, message=message)

        reconciler.reconcile(dict(body), event, retry)

    def drift(body: dict[str, Any], event: EventSink) -> None:
        reconciler.reconcile(body, event, drift_check=True)

    register_timer(registry, PLURAL, drift, interval=drift_interval)
