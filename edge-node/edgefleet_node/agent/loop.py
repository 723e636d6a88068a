"""The agent's main loop: long-poll, verify, activate, renew; report on a thread.

The long-poll (``GET /desired?have=<held version>&wait=<s>``) is the heartbeat. A
200 carries the desired-state envelope and the trust bundle: the trust bundle is
adopted when a trusted key signed a newer one; the document only through
:func:`edgefleet_node.protocol.desired.accept` (signature, device, version, expiry by
:class:`~edgefleet_node.agent.clock.Clock` time). A refused document leaves everything
running and sets ``UpdateFailed`` with the reason. An accepted one is stored
(``desired.json``) before it is activated, so a restart resumes it. Transient failures
(the gateway gone mid-download) retry with backoff and resume; others are retried
after :attr:`LoopSettings.failed_retry` (also after a restart: ``failed.json``) or
when a new document arrives.

Nothing here ever stops a workload because the gateway is unreachable, because a
document failed verification, or because the certificate expired.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from edgefleet_node.agent import activate, credentials, identity, log, snapshot, store
from edgefleet_node.agent.client import GatewayClient, GatewayError, UnreachableError
from edgefleet_node.agent.clock import Clock
from edgefleet_node.agent.held import (
    FailedAttempt,
    clear_failure,
    load_document,
    load_failure,
    save_failure,
)
from edgefleet_node.agent.reporter import Backoff, Reporter
from edgefleet_node.agent.reports import ReportQueue
from edgefleet_node.agent.runtime import Runtime
from edgefleet_node.protocol import desired as proto_desired
from edgefleet_node.protocol import dsse, wire

__all__ = ["Agent", "LoopSettings"]


@dataclass(frozen=True)
class LoopSettings:
    poll_wait: int = 60  # seconds the gateway may hold a long-poll (<= 120)
    report_interval: float = 60.0
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    failed_retry: float = 900.0  # retry a failed (non-transient) update after this
    queue_capacity: int = 512
    activation: activate.Settings = field(default_factory=activate.Settings)


class Agent:
    def __init__(
        self,
        state: store.StateDir,
        runtime: Runtime,
        settings: LoopSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.state = state.ensure()
        self._lock_fd = state.lock()
        state.sweep()
        self.runtime = runtime
        self.settings = settings or LoopSettings()
        status = store.read_json(state.status) or {}
        self.clock = clock or Clock(offset=float(status.get("clockOffset", 0.0)))
        self.creds = credentials.Credentials(state, self.clock)
        self.activator = activate.Activator(state, runtime, self.settings.activation)
        self.held: proto_desired.DesiredState | None = load_document(state)
        self.queue = ReportQueue(state.reports, self.settings.queue_capacity)
        self.reporter = Reporter(
            self.queue,
            self.identity.instance_id,
            self.clock,
            functools.partial(snapshot.take, self),
            interval=self.settings.report_interval,
        )
        self.reporter.use(self.client)
        self.connection = "Starting"
        self.refused = False  # the gateway said 401/403 to the last poll
        self.last_contact: float | None = status.get("lastContact")
        self._backoff = Backoff(self.settings.backoff_base, self.settings.backoff_cap)
        self._retry_at: float | None = None
        self._stop = threading.Event()
        self._next_heal = 0.0
        self.log = log.get()
        self._where = self.creds.where
        self._restore_failure()

    def _restore_failure(self) -> None:
        """A failed attempt at the held document waits as it would have, and says why."""
        failed = self.held and load_failure(self.state, self.held.version)
        if failed:
            self._retry_at = failed.retry_at
            self.reporter.set_condition("UpdateFailed", "True", failed.reason, failed.message)

    @property
    def identity(self) -> identity.Identity:
        return self.creds.identity

    @property
    def client(self) -> GatewayClient:
        return self.creds.client

    # -- the loop --------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self.client.abort()
        self.reporter.kick()

    def run(self) -> None:
        missing = self.activator.adopt()
        if missing:
            self.reporter.set_condition(
                "Ready",
                "False",
                "WorkloadUnhealthy",
                f"{len(missing)} workload(s) not running after restart",
            )
        thread = threading.Thread(
            target=self.reporter.run, args=(self._stop,), name="reporter", daemon=True
        )
        thread.start()
        try:
            while not self._stop.is_set():
                try:
                    self.step()
                except Exception as exc:  # a full disk, a runtime gone mad: never exit
                    self.log.error(
                        "agent step failed", **self._where, error=f"{type(exc).__name__}: {exc}"
                    )
                    self._pause(self._backoff.next() + 1.0)
        finally:
            self._stop.set()
            self.reporter.kick()
            thread.join(timeout=30)
            self.reporter.enqueue()
            os.close(self._lock_fd)

    def step(self) -> None:
        """One turn: identity and renewal, a pending activation, one long-poll."""
        self.creds.check()
        if time.monotonic() >= self._next_heal:
            self._next_heal = time.monotonic() + self.settings.report_interval
            faults = dict(self.activator.faults)
            healed = self.activator.heal()
            if healed:
                self.log.warning("workloads restarted", **self._where, workloads=healed)
            if self.activator.faults != faults:
                found = {n: f.message for n, f in self.activator.faults.items()}
                self.log.warning("workload faults changed", **self._where, faults=found)
            if healed or self.activator.faults != faults:
                self.reporter.kick()
        if (
            self.held is not None
            and self.activator.version != self.held.version
            and (self._retry_at is None or self.clock.device() >= self._retry_at)
        ):
            self._activate(self.held)
        wait = max(1, min(self.settings.poll_wait, int(self._next_heal - time.monotonic()) + 1))
        if self._retry_at is not None:
            wait = max(1, min(wait, int(self._retry_at - self.clock.device())))
        self._poll(wait)

    def _pause(self, seconds: float) -> None:
        self._stop.wait(timeout=seconds)

    def _poll(self, wait: int) -> None:
        query = {"wait": str(wait)}
        if self.held is not None:
            query["have"] = str(self.held.version)
        path = f"{wire.DESIRED_PATH}?{urllib.parse.urlencode(query)}"
        try:
            response = self.client.request(
                "GET",
                path,
                headers={wire.INSTANCE_HEADER: self.identity.instance_id},
                timeout=wait + 30,
                limit=2 * dsse.MAX_ENVELOPE + 1024,
            )
        except UnreachableError as exc:
            # A gateway may refuse an expired client certificate in the TLS handshake;
            # a gateway that is simply down says nothing about the certificate.
            expired = self.creds.expired() and not exc.no_answer
            self._offline("CertificateExpired" if expired else "Offline", str(exc))
            return
        except GatewayError as exc:
            expired = self.creds.expired()
            self.refused = exc.status in (401, 403)  # e.g. CertificateInvalid, Revoked
            self._offline(
                "CertificateExpired" if expired else exc.reason,
                str(exc),
                at_least=exc.retry_after or 0.0,
            )
            return
        self._online()
        if response.status == 304:
            return
        try:
            poll = proto_desired.PollResponse.from_bytes(response.body)
            self.creds.take_trust(poll.trust)
            doc = proto_desired.accept(
                poll.desired,
                self.identity.document_keys,
                namespace=self.identity.namespace,
                device=self.identity.device,
                held=self.held,
                now=self.clock.now(),
            )
        except proto_desired.DocumentRejectedError as exc:
            self._rejected(exc.reason, str(exc))
            return
        except wire.ProtocolError as exc:
            self._rejected("Malformed", str(exc))
            return
        store.atomic_write(self.state.desired, poll.desired.to_bytes())
        new = self.held is None or doc.version != self.held.version
        self.held = doc
        if new:
            self.log.info(
                "document accepted",
                **self._where,
                version=doc.version,
                workloads=len(doc.workloads),
            )
            self._retry_at = None
            self._activate(doc)

    def _activate(self, doc: proto_desired.DesiredState) -> None:
        try:
            changed = self.activator.apply(doc, self.client, self.identity.trust.image_keys)
        except activate.UpdateFailedError as exc:
            delay = self._backoff.next() if exc.transient else self.settings.failed_retry
            self._retry_at = self.clock.device() + delay
            save_failure(
                self.state, FailedAttempt(doc.version, self._retry_at, exc.reason, str(exc))
            )
            self.log.warning(
                "update failed",
                **self._where,
                version=doc.version,
                reason=exc.reason,
                error=str(exc),
                retry_in=round(delay, 1),
            )
            self.reporter.set_condition("UpdateFailed", "True", exc.reason, str(exc))
            self.reporter.kick()
            return
        self._retry_at = None
        clear_failure(self.state)
        self._backoff.reset()
        if changed:
            t = self.activator.timings
            self.log.info(
                "update active",
                **self._where,
                version=doc.version,
                resolve_s=round(t.resolve, 3),
                download_s=round(t.download, 3),
                start_s=round(t.start, 3),
                probe_s=round(t.probe, 3),
                bytes=t.bytes_received,
            )
        self.reporter.set_condition(
            "UpdateFailed",
            "False",
            "Succeeded" if changed else "UpToDate",
            f"desired version {doc.version} is active",
        )
        self.reporter.kick()

    def _rejected(self, reason: str, message: str) -> None:
        self.log.warning("document refused", **self._where, reason=reason, error=message)
        self.reporter.set_condition("UpdateFailed", "True", reason, message)
        self._pause(self._backoff.next() + 1.0)  # the gateway would answer the same at once

    def _online(self) -> None:
        first = self.connection != "Online"
        self.refused = False
        if first:
            self.log.info("gateway reached", **self._where, gateway=self.identity.gateway)
        self.connection = "Online"
        self.last_contact = self.clock.time()
        if self._retry_at is None:
            self._backoff.reset()
        if first:
            self.reporter.kick()
        self.reporter.set_condition("ClockSkew", *self.clock.skew_condition())

    def _offline(self, state: str, message: str, at_least: float = 0.0) -> None:
        if self._stop.is_set():  # the poll was cut short by our own shutdown
            return
        if state != self.connection:
            self.log.warning("gateway unreachable", **self._where, state=state, error=message)
        self.connection = state
        self.reporter.last_error = message[:300]
        self._pause(max(self._backoff.next(), at_least))  # an overloaded gateway's Retry-After
