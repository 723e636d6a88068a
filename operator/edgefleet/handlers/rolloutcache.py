"""The rollout controller's watch cache: parsed EdgeDevices, Rollouts, InferenceModels.

Filled by one list at start-up and then every watch event; an object is replaced only
by a newer ``resourceVersion`` (a late watch event never undoes the controller's own
write, whose answer goes in at once), and a Rollout the models refuse is kept apart with
its typed failure, so its pass can write ``Stalled``/``InvalidSpec``.
"""

from __future__ import annotations

import threading
from typing import Any

import pydantic
import structlog

from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.api.inferencemodel import InferenceModel
from edgefleet.api.rollout import Rollout, RolloutStatus
from edgefleet.domain.failures import Failure, classify

__all__ = ["KINDS", "FleetCache", "Key"]

log = structlog.get_logger("edgefleet.rollouts")

Key = tuple[str, str]
KINDS: dict[str, type[pydantic.BaseModel]] = {
    "edgedevices": EdgeDevice,
    "rollouts": Rollout,
    "inferencemodels": InferenceModel,
}


def _plain(body: Any) -> dict[str, Any]:
    doc = dict(body)
    status = {k: v for k, v in dict(doc.get("status") or {}).items() if k != "kopf"}
    return {
        "apiVersion": doc.get("apiVersion"),
        "kind": doc.get("kind"),
        "metadata": dict(doc.get("metadata") or {}),
        "spec": dict(doc.get("spec") or {}),
        "status": status or None,
    }


def _status_of(body: Any) -> RolloutStatus | None:
    try:
        return RolloutStatus.model_validate(dict(body.get("status") or {}))
    except pydantic.ValidationError:
        return None


def _version(body: Any) -> int:
    text = str(dict(body.get("metadata") or {}).get("resourceVersion") or "0")
    return int(text) if text.isdigit() else 0


class FleetCache:
    """Parsed objects by kind and (namespace, name); safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[Key, Any]] = {k: {} for k in KINDS}
        self._versions: dict[str, dict[Key, int]] = {k: {} for k in KINDS}
        #: Rollouts the models refuse: (generation, stored status, the failure).
        self.invalid: dict[Key, tuple[int, RolloutStatus | None, Failure]] = {}

    def put(self, plural: str, body: Any, *, deleted: bool = False) -> bool:
        """Store ``body`` unless an equal or newer version is held; whether it changed."""
        meta = dict(body.get("metadata") or {})
        key = (str(meta.get("namespace") or "default"), str(meta.get("name")))
        version = _version(body)
        with self._lock:
            held = self._versions[plural].get(key, -1)
            if deleted:
                self._objects[plural].pop(key, None)
                self._versions[plural].pop(key, None)
                self.invalid.pop(key, None)
                return True
            if version and version <= held:
                return False
        try:
            parsed = KINDS[plural].model_validate(_plain(body))
        except pydantic.ValidationError as exc:
            log.warning(
                "object not valid, ignored",
                kind=plural,
                namespace=key[0],
                name=key[1],
                errors=exc.error_count(),
            )
            if plural == "rollouts":
                with self._lock:
                    self.invalid[key] = (
                        int(meta.get("generation") or 0),
                        _status_of(body),
                        classify(exc),
                    )
            return False
        with self._lock:
            if version and version <= self._versions[plural].get(key, -1):
                return False
            self._objects[plural][key] = parsed
            self._versions[plural][key] = version
            if plural == "rollouts":
                self.invalid.pop(key, None)
        return True

    def refused(self) -> list[tuple[Key, int, RolloutStatus | None, Failure]]:
        with self._lock:
            return [(k, *v) for k, v in self.invalid.items()]

    def items(self, plural: str, namespace: str | None = None) -> list[Any]:
        with self._lock:
            return [v for k, v in self._objects[plural].items() if namespace in (None, k[0])]

    def get(self, plural: str, namespace: str, name: str) -> Any:
        with self._lock:
            return self._objects[plural].get((namespace, name))
