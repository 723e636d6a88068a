"""The desired-state document: what one device should run, signed.

The gateway builds it from ``EdgeDevice.status.desired`` (written by the rollout
controller), signs it (:mod:`~edgefleet_node.protocol.dsse`) with every active
signing key, and serves it on the long-poll. The device accepts a document only through
:func:`accept`, which refuses, each with its own error (and condition reason):

- a signature by no trusted key (arbitrary software)          -> ``SignatureInvalid``
- a document for another device (mix-and-match)               -> ``WrongDevice``
- a version below the one it holds (rollback)                 -> ``Downgrade``
- the same version with other content (replay, equivocation)  -> ``Replay``
- a document past its expiry (indefinite freeze)               -> ``Expired``

The same version with the same content and a later expiry is a refresh, accepted.
The trust bundle (gateway CAs and signing keys, for rotation) travels in its own
envelope with its own serial; a device adopts a new one only when a key it already
trusts signed it (:func:`accept_trust`).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgefleet_node.protocol import dsse, wire
from edgefleet_node.protocol.wire import ProtocolError

__all__ = [
    "DESIRED_PAYLOAD_TYPE",
    "TRUST_PAYLOAD_TYPE",
    "DesiredState",
    "DocumentRejectedError",
    "PollResponse",
    "Probe",
    "TrustBundle",
    "Workload",
    "accept",
    "accept_trust",
    "config_version",
]

DESIRED_PAYLOAD_TYPE = "application/vnd.edgefleet.desired-state.v1+json"
TRUST_PAYLOAD_TYPE = "application/vnd.edgefleet.trust-bundle.v1+json"
MAX_WORKLOADS = 16
_DIGEST = r"sha256:[0-9a-f]{64}"
_REPOSITORY = r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
_CONFIG_KEY = r"[A-Za-z_][A-Za-z0-9_]{0,62}"


class DocumentRejectedError(ProtocolError):
    """A document the device must not act on; ``reason`` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Probe:
    """A real inference the device runs before it calls a workload healthy."""

    input_name: str
    shape: tuple[int, ...]
    values: tuple[float, ...]
    output_name: str
    expected: tuple[float, ...]
    tolerance: float

    def to_json(self) -> dict[str, Any]:
        return {
            "inputName": self.input_name,
            "shape": list(self.shape),
            "values": list(self.values),
            "outputName": self.output_name,
            "expected": list(self.expected),
            "tolerance": self.tolerance,
        }

    @classmethod
    def from_json(cls, doc: Any, what: str) -> Probe:
        if not isinstance(doc, dict):
            raise ProtocolError(f"{what} must be an object")
        wire.only(
            doc, what, {"inputName", "shape", "values", "outputName", "expected", "tolerance"}
        )

        def floats(key: str) -> tuple[float, ...]:
            items = wire.req_list(doc, key, what, max_len=4096)
            if not items or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in items
            ):
                raise ProtocolError(f"{what}: {key!r} must be a non-empty list of numbers")
            return tuple(float(v) for v in items)

        shape = wire.req_list(doc, "shape", what, max_len=8)
        if not shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 65536 for d in shape
        ):
            raise ProtocolError(f"{what}: 'shape' must be a non-empty list of sizes")
        tolerance = wire.opt_float(doc, "tolerance", what, hi=1e6)
        return cls(
            wire.req_str(doc, "inputName", what, max_len=128),
            tuple(shape),
            floats("values"),
            wire.req_str(doc, "outputName", what, max_len=128),
            floats("expected"),
            1e-3 if tolerance is None else tolerance,
        )


def config_version(config: Mapping[str, str]) -> str:
    """The version a device reports for a merged configuration: a hash of its content."""
    return "sha256:" + wire.sha256_hex(wire.canonical(dict(config)))


@dataclass(frozen=True)
class Workload:
    """One model the device should run (one per InferenceModel)."""

    name: str  # the InferenceModel's name; unique within a document
    version: str  # the model version
    repository: str  # repository path, pulled through the gateway's /v2/
    index_digest: str
    manifest_digest: str  # the platform manifest inside the index, for this device
    platform: str
    probe: Probe | None = None
    config: Mapping[str, str] = field(default_factory=dict)
    host_devices: tuple[str, ...] = ()  # e.g. /dev/video0; mapped into the container
    rollout: str | None = None

    @property
    def config_version(self) -> str:
        return config_version(self.config)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "repository": self.repository,
            "indexDigest": self.index_digest,
            "manifestDigest": self.manifest_digest,
            "platform": self.platform,
            "config": dict(self.config),
            "hostDevices": list(self.host_devices),
        }
        if self.probe is not None:
            doc["probe"] = self.probe.to_json()
        if self.rollout is not None:
            doc["rollout"] = self.rollout
        return doc

    @classmethod
    def from_json(cls, doc: Any, what: str) -> Workload:
        if not isinstance(doc, dict):
            raise ProtocolError(f"{what} must be an object")
        allowed = {"name", "version", "repository", "indexDigest", "manifestDigest", "platform",
                   "config", "hostDevices", "probe", "rollout"}  # fmt: skip
        wire.only(doc, what, allowed)
        config = doc.get("config") or {}
        if not isinstance(config, dict) or len(config) > 256:
            raise ProtocolError(f"{what}: 'config' must be an object of at most 256 entries")
        for key, value in config.items():
            if not isinstance(value, str) or len(value) > 4096:
                raise ProtocolError(f"{what}: config value {key!r} must be a string")
            wire.req_str({"k": key}, "k", f"{what}: config key", pattern=_CONFIG_KEY)
        devices = wire.req_list(doc, "hostDevices", what, max_len=16)
        for path in devices:
            if not isinstance(path, str) or not path.startswith("/dev/") or ".." in path:
                raise ProtocolError(f"{what}: host device {path!r} must be a path under /dev/")
        probe = doc.get("probe")
        return cls(
            name=wire.check_name(wire.req_str(doc, "name", what, max_len=63), f"{what} name"),
            version=wire.req_str(doc, "version", what, max_len=64),
            repository=wire.req_str(doc, "repository", what, max_len=255, pattern=_REPOSITORY),
            index_digest=wire.req_str(doc, "indexDigest", what, max_len=71, pattern=_DIGEST),
            manifest_digest=wire.req_str(doc, "manifestDigest", what, max_len=71, pattern=_DIGEST),
            platform=wire.req_str(doc, "platform", what, max_len=32, pattern=r"linux/[a-z0-9/]+"),
            probe=None if probe is None else Probe.from_json(probe, f"{what} probe"),
            config=dict(config),
            host_devices=tuple(devices),
            rollout=wire.opt_str(doc, "rollout", what),
        )


@dataclass(frozen=True)
class DesiredState:
    namespace: str
    device: str
    version: int
    issued_at: datetime.datetime
    expires_at: datetime.datetime
    workloads: tuple[Workload, ...]

    def content(self) -> dict[str, Any]:
        """What the version stands for (everything but the times)."""
        return {
            "apiVersion": wire.PROTOCOL_VERSION,
            "kind": "DesiredState",
            "device": {"namespace": self.namespace, "name": self.device},
            "version": self.version,
            "workloads": [w.to_json() for w in self.workloads],
        }

    def content_digest(self) -> str:
        return "sha256:" + wire.sha256_hex(wire.canonical(self.content()))

    def to_bytes(self) -> bytes:
        doc = self.content()
        doc["issuedAt"] = wire.format_time(self.issued_at)
        doc["expiresAt"] = wire.format_time(self.expires_at)
        return wire.canonical(doc)

    def sign(self, keys: Sequence[Any]) -> dsse.Envelope:
        return dsse.sign(DESIRED_PAYLOAD_TYPE, self.to_bytes(), keys)

    @classmethod
    def from_bytes(cls, data: bytes) -> DesiredState:
        what = "desired state"
        doc = wire.load(data, what, dsse.MAX_ENVELOPE)
        wire.only(doc, what, {"apiVersion", "kind", "device", "version", "issuedAt",
                              "expiresAt", "workloads"})  # fmt: skip
        if doc.get("apiVersion") != wire.PROTOCOL_VERSION or doc.get("kind") != "DesiredState":
            raise ProtocolError(f"{what}: not a {wire.PROTOCOL_VERSION} DesiredState")
        device = wire.req_obj(doc, "device", what)
        wire.only(device, f"{what} device", {"namespace", "name"})
        workloads = tuple(
            Workload.from_json(w, f"workload {i}")
            for i, w in enumerate(wire.req_list(doc, "workloads", what, max_len=MAX_WORKLOADS))
        )
        names = [w.name for w in workloads]
        if len(set(names)) != len(names):
            raise ProtocolError(f"{what}: workload names repeat")
        return cls(
            namespace=wire.check_name(wire.req_str(device, "namespace", what), "namespace"),
            device=wire.check_name(wire.req_str(device, "name", what), "device"),
            version=wire.req_int(doc, "version", what),
            issued_at=wire.parse_time(wire.req_str(doc, "issuedAt", what, max_len=64), what),
            expires_at=wire.parse_time(wire.req_str(doc, "expiresAt", what, max_len=64), what),
            workloads=workloads,
        )


def accept(
    envelope: dsse.Envelope,
    trusted: dsse.TrustedKeys,
    *,
    namespace: str,
    device: str,
    held: DesiredState | None,
    now: datetime.datetime,
) -> DesiredState:
    """The document in ``envelope`` if this device may act on it; else raise
    :class:`DocumentRejectedError` with the condition reason."""
    try:
        body = dsse.verify(envelope, DESIRED_PAYLOAD_TYPE, trusted)
    except dsse.SignatureInvalidError as exc:
        raise DocumentRejectedError("SignatureInvalid", f"desired state: {exc}") from exc
    try:
        doc = DesiredState.from_bytes(body)
    except ProtocolError as exc:
        raise DocumentRejectedError("Malformed", str(exc)) from exc
    if (doc.namespace, doc.device) != (namespace, device):
        raise DocumentRejectedError(
            "WrongDevice",
            f"the document is for {doc.namespace}/{doc.device}, not {namespace}/{device}",
        )
    if doc.expires_at <= now:
        raise DocumentRejectedError(
            "Expired",
            f"the document expired at {wire.format_time(doc.expires_at)} "
            f"(device clock {wire.format_time(now)})",
        )
    if held is not None:
        if doc.version < held.version:
            raise DocumentRejectedError(
                "Downgrade", f"version {doc.version} is older than the held {held.version}"
            )
        if doc.version == held.version and doc.content_digest() != held.content_digest():
            raise DocumentRejectedError(
                "Replay", f"version {doc.version} arrived again with different content"
            )
    return doc


@dataclass(frozen=True)
class TrustBundle:
    """The gateway CAs, document-signing keys and image-signing keys a device trusts."""

    serial: int
    gateway_cas: tuple[bytes, ...]
    signing_keys: tuple[bytes, ...]  # sign desired-state documents and trust bundles
    image_keys: tuple[bytes, ...]  # sign images (cosign format)

    def to_bytes(self) -> bytes:
        return wire.canonical(
            {
                "apiVersion": wire.PROTOCOL_VERSION,
                "kind": "TrustBundle",
                "serial": self.serial,
                "gatewayCAs": [p.decode("ascii") for p in self.gateway_cas],
                "signingKeys": [p.decode("ascii") for p in self.signing_keys],
                "imageKeys": [p.decode("ascii") for p in self.image_keys],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TrustBundle:
        what = "trust bundle"
        doc = wire.load(data, what, dsse.MAX_ENVELOPE)
        wire.only(
            doc, what, {"apiVersion", "kind", "serial", "gatewayCAs", "signingKeys", "imageKeys"}
        )
        if doc.get("apiVersion") != wire.PROTOCOL_VERSION or doc.get("kind") != "TrustBundle":
            raise ProtocolError(f"{what}: not a {wire.PROTOCOL_VERSION} TrustBundle")

        def pems(key: str) -> tuple[bytes, ...]:
            items = wire.req_list(doc, key, what, max_len=8)
            if not items or not all(isinstance(p, str) and len(p) < 16384 for p in items):
                raise ProtocolError(f"{what}: {key!r} must be a non-empty list of PEM strings")
            return tuple(p.encode("ascii") for p in items)

        bundle = cls(
            wire.req_int(doc, "serial", what),
            pems("gatewayCAs"),
            pems("signingKeys"),
            pems("imageKeys"),
        )
        dsse.TrustedKeys.from_pems(bundle.signing_keys)  # they must load
        return bundle

    def sign(self, keys: Sequence[Any]) -> dsse.Envelope:
        return dsse.sign(TRUST_PAYLOAD_TYPE, self.to_bytes(), keys)


def accept_trust(
    envelope: dsse.Envelope, trusted: dsse.TrustedKeys, held_serial: int
) -> TrustBundle | None:
    """A newer trust bundle signed by a key the device trusts today; ``None`` when it is
    not newer. A signing-key rotation therefore overlaps: the bundle naming old and new
    keys is signed by the old one, and the one that drops the old key by the new one."""
    try:
        body = dsse.verify(envelope, TRUST_PAYLOAD_TYPE, trusted)
    except dsse.SignatureInvalidError as exc:
        raise DocumentRejectedError("SignatureInvalid", f"trust bundle: {exc}") from exc
    bundle = TrustBundle.from_bytes(body)
    return bundle if bundle.serial > held_serial else None


@dataclass(frozen=True)
class PollResponse:
    """The body of a 200 answer to the desired-state long-poll."""

    desired: dsse.Envelope
    trust: dsse.Envelope

    def to_bytes(self) -> bytes:
        return wire.canonical({"desired": self.desired.to_json(), "trust": self.trust.to_json()})

    @classmethod
    def from_bytes(cls, data: bytes) -> PollResponse:
        what = "poll response"
        doc = wire.load(data, what, 2 * dsse.MAX_ENVELOPE)
        wire.only(doc, what, {"desired", "trust"})
        return cls(
            dsse.Envelope.from_bytes(wire.canonical(wire.req_obj(doc, "desired", what))),
            dsse.Envelope.from_bytes(wire.canonical(wire.req_obj(doc, "trust", what))),
        )
