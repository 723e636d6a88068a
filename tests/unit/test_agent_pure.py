"""Pure pieces of the agent: backoff with full jitter, the clock, renewal timing."""

from __future__ import annotations

import datetime
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgefleet_node.agent.clock import SKEW_TOLERANCE, Clock
from edgefleet_node.agent.identity import renew_at
from edgefleet_node.agent.reporter import Backoff


def test_backoff_is_full_jitter_under_a_growing_capped_bound() -> None:
    b = Backoff(1.0, 30.0, random.Random(1))  # noqa: S311 -- reproducible
    bounds = [min(30.0, 2.0**n) for n in range(10)]
    delays = [b.next() for _ in range(10)]
    assert all(0 <= d <= bound for d, bound in zip(delays, bounds, strict=True))
    assert max(delays[6:]) > 2.0  # it grows
    b.reset()
    assert b.next() <= 1.0


@pytest.mark.parametrize(
    ("skew", "offset"),
    [
        (0.0, 0.0),
        (SKEW_TOLERANCE - 1, 0.0),
        (SKEW_TOLERANCE + 10, SKEW_TOLERANCE + 10),
        (-1e8, -1e8),
    ],
)
def test_clock_takes_the_gateway_time_only_beyond_the_tolerance(skew: float, offset: float):
    clock = Clock(wall=lambda: 1_000_000_000.0)
    clock.observe(1_000_000_000.0 + skew)
    assert clock.offset == pytest.approx(offset)
    assert clock.time() == pytest.approx(1_000_000_000.0 + offset)


def test_clock_back_in_agreement_drops_the_offset() -> None:
    clock = Clock(wall=lambda: 1_000_000_000.0, offset=5e6)
    clock.observe(1_000_000_000.0 + 3)
    assert clock.offset == 0.0


def _cert(not_before: datetime.datetime, not_after: datetime.datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


def test_renewal_falls_at_70_to_90_percent_of_the_remaining_lifetime() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    # Backdated five minutes, valid ten minutes from now (the gateway's shortest).
    cert = _cert(now - datetime.timedelta(minutes=5), now + datetime.timedelta(minutes=10))
    times = [renew_at(cert, now.timestamp(), random.Random(i)) for i in range(50)]  # noqa: S311
    start = now.timestamp()
    assert all(start + 0.7 * 600 <= t <= start + 0.9 * 600 for t in times)
    assert len({round(t) for t in times}) > 10  # jittered per device
