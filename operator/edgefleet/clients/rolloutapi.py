"""The rollout controller's Kubernetes I/O: list, server-side apply, Events.

Every status write is a server-side apply under the field manager
``edgefleet-rollouts`` (forced: the controller owns these fields, and a stray manual
edit must not wedge a rollout): an EdgeDevice's ``desired``/``previous``/
``desiredRevision``/``desiredVersion``, and a Rollout's whole status. Events are core/v1
Events on the Rollout, best effort (the status is the record).
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any, cast

import structlog
from kubernetes import client

from edgefleet.api.meta import GROUP, VERSION
from edgefleet.api.rollout import Rollout, RolloutStatus
from edgefleet.domain.rollout import FIELD_MANAGER, DeviceWrite, Event

__all__ = ["RolloutApi"]

log = structlog.get_logger("edgefleet.rollouts")

_APPLY = "application/apply-patch+yaml"


class RolloutApi:
    """List, apply and post for the rollout controller (clients made by the caller)."""

    def __init__(self, objects: client.CustomObjectsApi, core: client.CoreV1Api) -> None:
        self.objects = objects
        self.core = core

    def list(self, plural: str, namespace: str | None = None) -> dict[str, Any]:
        """All objects of ``plural`` (in ``namespace``, or every namespace)."""
        if namespace:
            result = self.objects.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        else:
            result = self.objects.list_cluster_custom_object(GROUP, VERSION, plural)
        return cast(dict[str, Any], result)

    def apply_device(self, write: DeviceWrite) -> dict[str, Any]:
        """Apply the controller-owned EdgeDevice status fields; the stored object back."""
        result = self.objects.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            write.namespace,
            "edgedevices",
            write.name,
            write.apply_body(),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY,
        )
        return cast(dict[str, Any], result)

    def apply_status(self, namespace: str, name: str, status: RolloutStatus) -> dict[str, Any]:
        """Apply the Rollout's status (all of it is the controller's)."""
        body = {
            "apiVersion": "edgefleet.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": name, "namespace": namespace},
            "status": status.wire(),
        }
        result = self.objects.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            "rollouts",
            name,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=_APPLY,
        )
        return cast(dict[str, Any], result)

    def post_event(self, rollout: Rollout, event: Event) -> None:
        """A core/v1 Event on the Rollout; failures are logged, never raised."""
        ns = rollout.metadata.namespace or "default"
        now = datetime.datetime.now(datetime.UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{rollout.metadata.name}.{uuid.uuid4().hex[:16]}", namespace=ns
            ),
            involved_object=client.V1ObjectReference(
                api_version="edgefleet.io/v1alpha1",
                kind="Rollout",
                name=rollout.metadata.name,
                namespace=ns,
                uid=rollout.metadata.uid,
            ),
            reason=event.reason,
            message=event.message,
            type=event.type,
            source=client.V1EventSource(component="edgefleet-rollouts"),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self.core.create_namespaced_event(ns, body)
        except client.ApiException as exc:
            log.warning(
                "event not posted",
                namespace=ns,
                name=rollout.metadata.name,
                reason=event.reason,
                status=exc.status,
            )
