"""The one reconcile pattern of every edgefleet controller (models, rollouts, devices).

A reconcile *pass* is one level-based look at one object. :class:`Pass` is the
context manager every controller's reconcile runs inside; it guarantees:

1. **the generation is read once** (:attr:`Pass.generation`) and every condition and
   ``observedGeneration`` written in the pass uses it — an edit arriving mid-pass is
   the next pass's business;
2. **the desired status is computed in one place** — the controller's pure status
   functions (``edgefleet.domain.<kind>status``) — and assigned to
   :attr:`Pass.status`; nothing else patches status;
3. **status is always written on exit**, also when an unexpected exception escapes:
   the exception goes through the one mapping :func:`edgefleet.domain.failures.classify`
   and the controller's ``on_failure`` status function turns the :class:`Failure` into
   a status (never "building" forever); it is written only when it differs from what
   the API server already holds;
4. **typed outcome for kopf** — a temporary failure raises ``kopf.TemporaryError``
   with exponential backoff (:func:`edgefleet.domain.failures.retry_delay`); a
   permanent one returns normally after writing ``Stalled=True`` (kopf stops retrying
   until the spec changes); a failed status write is retried as temporary.

How to use it in a new controller (see :mod:`edgefleet.handlers.inferencemodel`)::

    def reconcile(self, body, event, retry=0):
        plain = reconcile.strip_runtime_fields(body)
        with reconcile.Pass(
            reconcile.ObjectRef.of_body(plain, plural="things"),
            thingstatus.parse(plain["status"]),    # None when absent or unreadable
            write=reconcile.status_writer(self.objects, "things"),
            on_failure=thingstatus.from_failure,   # (status, generation=, failure=) -> status
            event=event,
            retry=retry,
        ) as p:
            obj = Thing.model_validate(plain)     # a ValidationError → InvalidSpec, Stalled
            p.status = thingstatus.progressing(p.status, generation=p.generation)
            p.checkpoint()                        # optional: make a long step visible
            result = self.steps(obj)              # may raise anything
            p.status = thingstatus.done(p.status, generation=p.generation, result=result)

and register ``create``/``update(field="spec")``/``resume`` handlers plus a
:func:`edgefleet.handlers.triggers.register_timer` for drift, all calling the same
``reconcile`` (behind :class:`edgefleet.handlers.triggers.ObjectLocks`). Parse the body
inside the pass, so an object the API server accepted but the models refuse becomes
``InvalidSpec`` instead of a crash. Kinds whose status has other writers pass a
``write`` that applies with their own field manager.
The gateway's EdgeDevice status (async, in a layer that may not import this one) uses
the same pure pieces in the same order instead: ``devicestatus.compute``, ``classify``,
``devicefailure.from_failure`` (on ``conditions.mark_failure``, as
:func:`fallback_failure_status` here), always written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

import kopf
import structlog
from kubernetes import client

from edgefleet.api import GROUP, VERSION
from edgefleet.api.conditions import Reason, Type
from edgefleet.api.meta import ObjectStatus
from edgefleet.domain.conditions import mark_failure, now_rfc3339, set_condition
from edgefleet.domain.failures import Failure, classify, retry_delay

__all__ = [
    "EventSink",
    "FailureStatus",
    "ObjectRef",
    "Pass",
    "StatusWriter",
    "fallback_failure_status",
    "status_writer",
    "strip_runtime_fields",
]

StatusT = TypeVar("StatusT", bound=ObjectStatus)
StatusIn = TypeVar("StatusIn", bound=ObjectStatus, contravariant=True)
StatusOut = TypeVar("StatusOut", bound=ObjectStatus, covariant=True)

log = structlog.get_logger("edgefleet.reconcile")

#: Posts a Kubernetes Event about the object: (type, reason, message).
EventSink = Callable[[str, str, str], None]


@dataclass(frozen=True)
class ObjectRef:
    """Which object a pass is about, and the generation it reconciles."""

    kind: str
    plural: str
    namespace: str
    name: str
    generation: int

    @classmethod
    def of_body(cls, body: Mapping[str, Any], plural: str) -> ObjectRef:
        """Never raises: a malformed ``metadata`` is the models' to refuse (InvalidSpec),
        inside the pass, where status is written."""
        meta = body.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        generation = meta.get("generation")
        return cls(
            kind=str(body.get("kind", "")),
            plural=plural,
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name", "")),
            generation=generation if type(generation) is int and generation >= 0 else 0,
        )


class StatusWriter(Protocol[StatusIn]):
    """Writes a status of the object (merge patch, or apply with a field manager)."""

    def __call__(self, ref: ObjectRef, status: StatusIn, /) -> None: ...


class FailureStatus(Protocol[StatusT]):
    """The controller's pure status function for a failed pass."""

    def __call__(
        self, status: StatusT | None, /, *, generation: int, failure: Failure
    ) -> StatusT: ...


def status_writer(objects: client.CustomObjectsApi, plural: str) -> StatusWriter[Any]:
    """A writer that merge-patches the status subresource (controllers never touch spec).

    Use it for kinds whose status has one writer; kinds with several (EdgeDevice)
    need a server-side apply writer with their own field manager.
    """

    def write(ref: ObjectRef, status: ObjectStatus) -> None:
        objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, ref.namespace, plural, ref.name, {"status": status.wire()}
        )

    return write


def strip_runtime_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """A deep, JSON-safe copy of the object as the API models see it (no status.kopf)."""
    plain: dict[str, Any] = json.loads(json.dumps(dict(body), default=str))
    raw_status = plain.get("status")
    status = (
        {k: v for k, v in raw_status.items() if k != "kopf"}
        if isinstance(raw_status, dict)
        else raw_status  # not an object: left for the models to refuse (InvalidSpec)
    )
    return {
        "apiVersion": plain.get("apiVersion"),
        "kind": plain.get("kind"),
        "metadata": plain.get("metadata") or {},
        "spec": plain.get("spec") or {},
        "status": status or None,
    }


def fallback_failure_status(
    status: StatusT | None, *, generation: int, failure: Failure
) -> StatusT | None:
    """A truthful status when the kind's ``on_failure`` itself failed: the shared
    kstatus conditions (:func:`edgefleet.domain.conditions.mark_failure`) and Ready
    False on what is stored; None when nothing is stored to build on."""
    if status is None:
        return None
    now = now_rfc3339()
    conds = mark_failure(
        status.conditions,
        reason=failure.reason,
        message=failure.message,
        permanent=failure.permanent,
        generation=generation,
        now=now,
    )
    conds = set_condition(
        conds, Type.READY, "False", failure.reason, failure.message, generation=generation, now=now
    )
    return status.model_copy(update={"conditions": conds})


def _wire(status: ObjectStatus | None) -> dict[str, Any] | None:
    return None if status is None else status.wire()


class Pass(Generic[StatusT]):
    """One reconcile pass of one object; see the module docstring."""

    def __init__(
        self,
        ref: ObjectRef,
        observed: StatusT | None,
        *,
        write: StatusWriter[StatusT],
        on_failure: FailureStatus[StatusT],
        event: EventSink,
        retry: int = 0,
    ) -> None:
        self.ref = ref
        self.status: StatusT | None = observed
        self.failure: Failure | None = None
        self._written = _wire(observed)
        self._write = write
        self._on_failure = on_failure
        self._event = event
        self._retry = retry
        self.log = log.bind(
            kind=ref.kind, namespace=ref.namespace, name=ref.name, generation=ref.generation
        )

    @property
    def generation(self) -> int:
        """The generation this pass reconciles (read once, when the pass began)."""
        return self.ref.generation

    def checkpoint(self) -> None:
        """Write :attr:`status` now if it changed (before a long step, for example)."""
        if self.status is not None and _wire(self.status) != self._written:
            self._write(self.ref, self.status)
            self._written = _wire(self.status)

    def event(self, type_: str, reason: str, message: str) -> None:
        try:
            self._event(type_, reason, message)
        except Exception as exc:  # an Event is best effort; status is the record
            self.log.warning("event not posted", reason=reason, error=str(exc))

    def _failed_status(self, failure: Failure) -> StatusT | None:
        try:
            return self._on_failure(self.status, generation=self.generation, failure=failure)
        except Exception as bug:  # a bug in the status function must not silence status
            self.log.error("failure status function failed", exc_info=True)
            self.failure = Failure(
                Reason.INTERNAL_ERROR,
                f"{failure.reason}: {failure.message} (computing the status failed:"
                f" {type(bug).__name__}: {bug})",
                permanent=False,
            )
            return fallback_failure_status(
                self.status, generation=self.generation, failure=self.failure
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is not None and not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit, cancellation: not ours to map
        if exc is not None:
            self.failure = classify(exc)
            self.status = self._failed_status(self.failure)
            self.log.warning(
                "reconcile failed",
                reason=self.failure.reason,
                message=self.failure.message,
                permanent=self.failure.permanent,
                error_type=type(exc).__name__,
                exc_info=self.failure.reason == "InternalError",
            )
            self.event("Warning", self.failure.reason, self.failure.message)
        try:
            self.checkpoint()
        except Exception as write_exc:
            self.log.warning("status write failed", error=str(write_exc))
            raise kopf.TemporaryError(
                f"status write failed: {write_exc}", delay=retry_delay(self._retry)
            ) from write_exc
        if self.failure is not None and self.failure.temporary:
            raise kopf.TemporaryError(
                f"{self.failure.reason}: {self.failure.message}", delay=retry_delay(self._retry)
            ) from exc
        return exc is not None  # a permanent failure is recorded; kopf stops retrying
