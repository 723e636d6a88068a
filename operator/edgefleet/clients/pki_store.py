"""The gateway's PKI Secrets: names, keys, and reading/writing them safely.

The Secrets live in the gateway namespace (see ``docs/rotation.md``):

=============================  =============================================================
``edgefleet-device-ca``        ``tls.crt``/``tls.key``: issues device client certificates;
                               ``trusted.crt`` (optional): every device CA still accepted
``edgefleet-gateway-ca``       ``tls.crt``/``tls.key``: issues the serving certificate;
                               ``trusted.crt`` (optional): the CAs devices should trust
``edgefleet-gateway-tls``      ``tls.crt`` (chain)/``tls.key``: the serving certificate
``edgefleet-document-key``     ``document.key``: signs desired-state documents and trust
                               bundles; ``previous.key`` during a rotation (both sign)
=============================  =============================================================

Writes are optimistic: a create that loses a race (409) re-reads the winner's object, a
replace carries the ``resourceVersion`` it read. Secret values never reach logs or errors.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from edgefleet.domain.pki import PkiError

__all__ = [
    "DEVICE_CA",
    "DOCUMENT_KEY",
    "GATEWAY_CA",
    "GATEWAY_TLS",
    "GENERATED",
    "IMAGE_KEYS",
    "ROTATION_STARTED",
    "ROTATION_STEP",
    "ConflictError",
    "PkiNotReadyError",
    "StoredObject",
    "annotated",
    "create",
    "read_configmap",
    "read_secret",
    "replace",
]

DEVICE_CA = "edgefleet-device-ca"
GATEWAY_CA = "edgefleet-gateway-ca"
GATEWAY_TLS = "edgefleet-gateway-tls"
DOCUMENT_KEY = "edgefleet-document-key"
IMAGE_KEYS = "edgefleet-signing-key-public"  # ConfigMap, written by the operator
#: Counts the rotation steps taken on an object; the trust bundle's serial sums them.
ROTATION_STEP = "edgefleet.io/rotation-step"
#: When the rotation in progress began (RFC 3339); absent when none is.
ROTATION_STARTED = "edgefleet.io/rotation-started"
#: Set on objects edgefleet generated (it may re-issue them); absent on supplied ones.
GENERATED = "edgefleet.io/generated"
_LABELS = {"app.kubernetes.io/part-of": "edgefleet", "app.kubernetes.io/component": "gateway-pki"}


class PkiNotReadyError(PkiError):
    """Something the gateway needs is not there yet (e.g. the operator has not published
    the image-signing public key); retry later."""


class ConflictError(Exception):
    """Someone else changed the object since it was read."""


@dataclass
class StoredObject:
    """A Secret's or ConfigMap's decoded data and the metadata we use."""

    kind: str
    namespace: str
    name: str
    data: dict[str, bytes]
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: str | None = None
    object_type: str = "Opaque"

    @property
    def where(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def need(self, key: str) -> bytes:
        value = self.data.get(key)
        if not value:
            raise PkiError(f"{self.where} has no {key!r} entry")
        return value

    @property
    def generated(self) -> bool:
        return self.annotations.get(GENERATED) == "true"

    @property
    def rotation_step(self) -> int:
        raw = self.annotations.get(ROTATION_STEP, "0")
        if not raw.isdigit():
            raise PkiError(f"{self.where}: annotation {ROTATION_STEP} must be an integer")
        return int(raw)


def read_secret(core: client.CoreV1Api, namespace: str, name: str) -> StoredObject | None:
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    where = f"Secret {namespace}/{name}"
    data: dict[str, bytes] = {}
    for key, value in (secret.data or {}).items():
        try:
            data[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PkiError(f"{where}: {key!r} is not base64") from exc
    meta = secret.metadata or client.V1ObjectMeta()
    return StoredObject(
        "Secret",
        namespace,
        name,
        data,
        dict(meta.annotations or {}),
        meta.resource_version,
        secret.type or "Opaque",
    )


def read_configmap(core: client.CoreV1Api, namespace: str, name: str) -> StoredObject | None:
    try:
        cm = core.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    data = {k: v.encode() for k, v in (cm.data or {}).items()}
    meta = cm.metadata or client.V1ObjectMeta()
    return StoredObject(
        "ConfigMap", namespace, name, data, dict(meta.annotations or {}), meta.resource_version
    )


def _body(obj: StoredObject) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=obj.name,
            labels=_LABELS,
            annotations=obj.annotations or None,
            resource_version=obj.resource_version,
        ),
        type=obj.object_type,
        data={k: base64.b64encode(v).decode("ascii") for k, v in obj.data.items()},
    )


def create(core: client.CoreV1Api, obj: StoredObject) -> StoredObject:
    """Create the Secret; when another writer won the race, return theirs."""
    try:
        core.create_namespaced_secret(obj.namespace, _body(obj))
    except ApiException as exc:
        if exc.status != 409:
            raise
    stored = read_secret(core, obj.namespace, obj.name)
    if stored is None:
        raise PkiNotReadyError(f"{obj.where} vanished right after it was created")
    return stored


def replace(core: client.CoreV1Api, obj: StoredObject) -> StoredObject:
    """Replace the Secret if it still has the ``resourceVersion`` we read."""
    try:
        core.replace_namespaced_secret(obj.name, obj.namespace, _body(obj))
    except ApiException as exc:
        if exc.status == 409:
            raise ConflictError(f"{obj.where} changed while it was being updated") from exc
        raise
    stored = read_secret(core, obj.namespace, obj.name)
    if stored is None:
        raise PkiNotReadyError(f"{obj.where} vanished right after it was replaced")
    return stored


def annotated(obj: StoredObject, changes: Mapping[str, str | None]) -> dict[str, str]:
    """``obj``'s annotations with ``changes`` applied (``None`` removes)."""
    result = dict(obj.annotations)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result
