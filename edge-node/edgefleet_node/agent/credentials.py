"""The identity the agent uses right now, and keeping it usable: reload after a
re-enrolment, renew before expiry, adopt newer trust bundles.

A re-enrolment (``edgefleet-node enroll`` while the agent runs) replaces
``identity/client.pem``; :meth:`Credentials.check` notices (inode and mtime) and uses
the new identity from the next request. Renewal happens when gateway time passes
``renewAt`` (70-90 % of the remaining lifetime, jittered) and the certificate is still
valid; a failed renewal is retried every turn, the old certificate keeps working.
"""

from __future__ import annotations

from edgefleet_node.agent import identity, log, store
from edgefleet_node.agent.client import GatewayClient, GatewayError, UnreachableError
from edgefleet_node.agent.clock import Clock
from edgefleet_node.protocol import desired as proto_desired
from edgefleet_node.protocol import dsse, enroll, wire

__all__ = ["Credentials"]


class Credentials:
    def __init__(self, state: store.StateDir, clock: Clock) -> None:
        self.state = state
        self.clock = clock
        self.identity = identity.load(state)
        self.client = GatewayClient(
            self.identity.gateway, self.identity.ca_pem, self.identity.client_pem, clock
        )
        self._stamp = self._file_stamp()
        self.log = log.get()

    @property
    def where(self) -> dict[str, str]:
        return {"namespace": self.identity.namespace, "device": self.identity.device}

    def expired(self) -> bool:
        return self.clock.time() > self.identity.not_after.timestamp()

    def _file_stamp(self) -> tuple[int, int]:
        st = (self.state.identity / "client.pem").stat()
        return st.st_mtime_ns, st.st_ino

    def check(self) -> None:
        """Reload a replaced identity; renew when due."""
        stamp = self._file_stamp()
        if stamp != self._stamp:  # re-enrolled (new token)
            self._stamp = stamp
            self.identity = identity.load(self.state)
            self.log.info("identity reloaded", **self.where, serial=f"{self.identity.serial:x}")
            self.client.reload(self.identity.client_pem, self.identity.ca_pem)
        if self.clock.time() >= self.identity.renew_at and not self.expired():
            self.renew()

    def renew(self) -> bool:
        key_pem, csr = identity.make_key_and_csr(self.identity.namespace, self.identity.device)
        try:
            response = self.client.request(
                "POST",
                wire.RENEW_PATH,
                enroll.RenewRequest(csr).to_bytes(),
                {wire.INSTANCE_HEADER: self.identity.instance_id},
                limit=wire.MAX_ENROLL_BODY,
            )
            answer = enroll.EnrollResponse.from_bytes(response.body)
        except (UnreachableError, GatewayError, wire.ProtocolError):
            return False  # next turn; the old certificate is still valid
        serial = identity.save_credentials(self.state, key_pem, answer, self.clock.time())
        self.log.info(
            "certificate renewed", **self.where, serial=f"{serial:x}", not_after=answer.not_after
        )
        self.identity = identity.load(self.state)
        self._stamp = self._file_stamp()
        self.client.reload(self.identity.client_pem)
        return True

    def take_trust(self, envelope: dsse.Envelope) -> None:
        """Adopt a newer trust bundle signed by a document key trusted today."""
        bundle = proto_desired.accept_trust(
            envelope, self.identity.document_keys, self.identity.trust.serial
        )
        if bundle is None:
            return
        self.log.info("trust bundle adopted", **self.where, serial=bundle.serial)
        identity.save_trust(self.state, bundle)
        self.identity = identity.load(self.state)
        self.client.reload(ca_pem=self.identity.ca_pem)
