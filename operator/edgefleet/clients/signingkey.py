"""The operator's image-signing key, kept in a Kubernetes Secret.

A user-supplied Secret is used as given; when none exists the operator generates a
P-256 key once and stores it (a second replica racing to do the same reads the
winner's). The public key is also published in a ConfigMap, readable by anyone who
verifies images (``cosign verify --key``, devices). The private key never appears in
logs or Events.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from edgefleet.clients.pki_store import ROTATION_STEP
from edgefleet.domain import signing

__all__ = ["PRIVATE_KEY", "PUBLIC_KEY", "ensure_signing_key"]

PRIVATE_KEY = "cosign.key"
PUBLIC_KEY = "cosign.pub"
_LABELS = {"app.kubernetes.io/part-of": "edgefleet", "app.kubernetes.io/component": "signing"}


def _read(core: client.CoreV1Api, namespace: str, name: str) -> Any | None:
    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _publish_public_key(core: client.CoreV1Api, namespace: str, name: str, pem: bytes) -> None:
    """Publish ``pem`` in ConfigMap ``<name>-public``. A changed key bumps its
    ``edgefleet.io/rotation-step`` annotation, so the gateway's trust-bundle serial grows
    and devices adopt the new key; other annotations are kept; an unchanged key is not
    written again."""
    cm_name = f"{name}-public"
    try:
        current = core.read_namespaced_config_map(cm_name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        current = None
    if current is None:
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=cm_name, labels=_LABELS),
            data={PUBLIC_KEY: pem.decode()},
        )
        try:
            core.create_namespaced_config_map(namespace, body)
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = core.read_namespaced_config_map(cm_name, namespace)
    if (current.data or {}).get(PUBLIC_KEY) == pem.decode():
        return
    meta = current.metadata or client.V1ObjectMeta(name=cm_name)
    annotations = dict(meta.annotations or {})
    step = annotations.get(ROTATION_STEP, "0")
    annotations[ROTATION_STEP] = str((int(step) if step.isdigit() else 0) + 1)
    meta.annotations = annotations
    meta.labels = {**(meta.labels or {}), **_LABELS}
    current.metadata = meta
    current.data = {**(current.data or {}), PUBLIC_KEY: pem.decode()}
    core.replace_namespaced_config_map(cm_name, namespace, current)  # carries resourceVersion


def ensure_signing_key(
    core: client.CoreV1Api, namespace: str, name: str
) -> ec.EllipticCurvePrivateKey:
    """The signing key from Secret ``namespace/name``, generated there when absent."""
    secret = _read(core, namespace, name)
    if secret is None:
        key = signing.generate_key()
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, labels=_LABELS),
            type="Opaque",
            data={
                PRIVATE_KEY: base64.b64encode(signing.private_key_pem(key)).decode(),
                PUBLIC_KEY: base64.b64encode(signing.public_key_pem(key)).decode(),
            },
        )
        try:
            core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            secret = _read(core, namespace, name)
    if secret is not None:
        data = secret.data or {}
        if PRIVATE_KEY not in data:
            raise signing.SigningKeyError(
                f"Secret {namespace}/{name} has no {PRIVATE_KEY!r} entry (a PKCS#8 PEM P-256 key)"
            )
        key = signing.load_private_key(base64.b64decode(data[PRIVATE_KEY]))
    _publish_public_key(core, namespace, name, signing.public_key_pem(key))
    return key
