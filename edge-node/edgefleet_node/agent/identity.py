"""The device's identity on disk: key and certificate, pinned CAs, trusted keys.

``identity/client.pem`` (0600) holds the private key *and* the certificate chain in one
file, so a renewal replaces both in one atomic rename (never a new key beside an old
certificate). ``identity/gateway-ca.pem`` is the pinned gateway CA bundle,
``identity/trust.json`` the document- and image-signing keys with their trust serial,
``identity/identity.json`` who the device is and where its gateway is.
"""

from __future__ import annotations

import datetime
import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet_node.agent import store
from edgefleet_node.agent.clock import Clock
from edgefleet_node.protocol import dsse, enroll, wire
from edgefleet_node.protocol.desired import TrustBundle

if TYPE_CHECKING:  # x509 only at enrolment and renewal: the idle agent never loads it
    from cryptography import x509

__all__ = [
    "Identity",
    "IdentityError",
    "instance_id",
    "load",
    "make_key_and_csr",
    "renew_at",
    "save_credentials",
    "save_enrolment",
    "save_trust",
]


class IdentityError(Exception):
    """No usable identity (never enrolled, or the files are damaged)."""


@dataclass(frozen=True)
class Identity:
    namespace: str
    device: str
    gateway: str
    instance_id: str
    platform: str
    client_pem: Path
    ca_pem: Path
    trust: TrustBundle
    not_after: datetime.datetime
    renew_at: float  # gateway time (epoch seconds) from which to renew
    serial: int

    @property
    def document_keys(self) -> dsse.TrustedKeys:
        return dsse.TrustedKeys.from_pems(self.trust.signing_keys)


def make_key_and_csr(namespace: str, device: str) -> tuple[bytes, bytes]:
    """A new P-256 key (PKCS#8 PEM) and a CSR for ``CN=<device>, O=<namespace>``."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, device),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, namespace),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def renew_at(cert: x509.Certificate, now: float, rng: random.Random | None = None) -> float:
    """A moment at 70-90 % of the certificate's remaining lifetime from ``now`` (gateway
    time), jittered per device. From ``now``, not from ``notBefore``: issuers backdate
    ``notBefore`` for slow clocks, which would put a short-lived certificate's renewal
    in the past and renew it on every turn."""
    end = cert.not_valid_after_utc.timestamp()
    start = max(now, cert.not_valid_before_utc.timestamp())
    return start + max(end - start, 0.0) * (rng or random.SystemRandom()).uniform(0.7, 0.9)


def _leaf(chain_pem: bytes) -> x509.Certificate:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(chain_pem)[0]
    except (ValueError, IndexError) as exc:
        raise IdentityError(f"the certificate is not PEM: {exc}") from exc


def save_credentials(
    state: store.StateDir, key_pem: bytes, response: enroll.EnrollResponse, now: float
) -> int:
    """Store key + certificate (one atomic file) and update identity.json; the serial.
    ``now`` is gateway time (:class:`~edgefleet_node.agent.clock.Clock`)."""
    cert = _leaf(response.certificate_pem)
    store.atomic_write(
        state.identity / "client.pem", key_pem + enroll.bundle([response.certificate_pem]), 0o600
    )
    current = store.read_json(state.identity / "identity.json") or {}
    current.update(
        {
            "namespace": response.namespace,
            "device": response.device,
            "notAfter": response.not_after,
            "renewAt": renew_at(cert, now),
            "serial": cert.serial_number,
        }
    )
    store.write_json(state.identity / "identity.json", current, 0o600)
    return int(cert.serial_number)


def save_trust(state: store.StateDir, bundle: TrustBundle) -> None:
    store.atomic_write(state.identity / "gateway-ca.pem", enroll.bundle(bundle.gateway_cas))
    store.atomic_write(state.identity / "trust.json", bundle.to_bytes())


def save_enrolment(
    state: store.StateDir,
    *,
    gateway: str,
    platform: str,
    key_pem: bytes,
    response: enroll.EnrollResponse,
    instance_id: str,
    now: float,
) -> None:
    """Everything a first enrolment (or a re-enrolment with a new token) stores."""
    state.ensure()
    previous = store.read_json(state.identity / "identity.json") or {}
    if (previous.get("namespace"), previous.get("device")) != (
        response.namespace,
        response.device,
    ):
        # Another device's held document would make the version rules meaningless, and
        # its queued reports are not this device's.
        state.desired.unlink(missing_ok=True)
        for queued in state.reports.glob("*.json"):
            queued.unlink(missing_ok=True)
    trust = TrustBundle(0, response.gateway_cas, response.signing_keys, response.image_keys)
    held = _load_trust(state)
    if held is not None and held.serial > 0 and previous.get("device") == response.device:
        trust = TrustBundle(held.serial, trust.gateway_cas, trust.signing_keys, trust.image_keys)
    save_trust(state, trust)
    previous.update({"gateway": gateway, "platform": platform, "instanceId": instance_id})
    store.write_json(state.identity / "identity.json", previous, 0o600)
    save_credentials(state, key_pem, response, now)
    _keep_clock_offset(state, now)


def _keep_clock_offset(state: store.StateDir, now: float) -> None:
    """Keep the clock offset learnt while enrolling where ``run`` loads it
    (``status.json``): an agent that cannot reach the gateway at its first start still
    judges its certificate and stamps its conditions in gateway time, instead of
    calling a valid certificate expired by a device clock years ahead."""
    learnt = Clock()
    learnt.observe(now)  # ``now`` is gateway time: the same tolerance rule as the agent's
    try:
        status = store.read_json(state.status) or {}
    except store.StoreError:  # the agent rewrites it whole on its next turn
        status = {}
    status["clockOffset"] = learnt.offset
    store.write_json(state.status, status)


def instance_id(state: store.StateDir) -> str:
    """This installation's random instance id (kept across re-enrolments)."""
    previous = store.read_json(state.identity / "identity.json") or {}
    found = previous.get("instanceId")
    return found if isinstance(found, str) and len(found) == 32 else secrets.token_hex(16)


def _load_trust(state: store.StateDir) -> TrustBundle | None:
    try:
        return TrustBundle.from_bytes((state.identity / "trust.json").read_bytes())
    except FileNotFoundError:
        return None
    except wire.ProtocolError as exc:
        raise IdentityError(f"identity/trust.json is damaged: {exc}") from exc


def load(state: store.StateDir) -> Identity:
    doc = store.read_json(state.identity / "identity.json")
    client = state.identity / "client.pem"
    if doc is None or not client.exists():
        raise IdentityError(
            f"not enrolled (no identity in {state.identity}): run "
            "`edgefleet-node enroll --gateway URL --token TOKEN`"
        )
    trust = _load_trust(state)
    if trust is None:
        raise IdentityError("identity/trust.json is missing: enrol again")
    try:
        return Identity(
            namespace=str(doc["namespace"]),
            device=str(doc["device"]),
            gateway=str(doc["gateway"]),
            instance_id=str(doc["instanceId"]),
            platform=str(doc["platform"]),
            client_pem=client,
            ca_pem=state.identity / "gateway-ca.pem",
            trust=trust,
            not_after=wire.parse_time(str(doc["notAfter"]), "notAfter"),
            renew_at=float(doc["renewAt"]),
            serial=int(doc["serial"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise IdentityError(f"identity/identity.json is damaged: {exc}") from exc
