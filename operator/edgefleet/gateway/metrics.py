"""The gateway's Prometheus metrics, on a registry of its own (no process globals).

Served at ``/metrics``. Names start with ``edgefleet_gateway_``; labels are bounded
(route templates, status codes, write kinds), never device names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics"]


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=_registry)

    def __post_init__(self) -> None:
        r = self.registry
        p = "edgefleet_gateway_"
        self.requests = Counter(
            p + "requests", "HTTP requests answered", ["route", "code"], registry=r
        )
        self.latency = Histogram(
            p + "request_duration_seconds",
            "Time to answer a request (long-polls excluded)",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.wakeup = Histogram(
            p + "longpoll_wakeup_seconds",
            "From the watch event that changed a device's document to the answer",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
            registry=r,
        )
        self.connected_devices = Gauge(
            p + "connected_devices",
            "Devices seen on this replica within the grace period",
            registry=r,
        )
        self.longpolls_open = Gauge(p + "longpolls_open", "Long-polls held open", registry=r)
        self.connections_open = Gauge(p + "connections_open", "TLS connections open", registry=r)
        self.handshakes_in_flight = Gauge(
            p + "handshakes_in_flight", "TLS handshakes under way", registry=r
        )
        self.handshake_failures = Counter(
            p + "handshake_failures", "TLS handshakes that failed, by kind", ["kind"], registry=r
        )
        self.connections_refused = Counter(
            p + "connections_refused",
            "Connections closed before the TLS handshake, by reason",
            ["reason"],
            registry=r,
        )
        self.oci_stalls = Counter(
            p + "oci_stalls",
            "Blob downloads dropped because the device stopped reading",
            registry=r,
        )
        self.bytes_proxied = Counter(
            p + "proxied_bytes", "Bytes streamed from the registry to devices", registry=r
        )
        self.api_writes = Counter(
            p + "api_writes",
            "EdgeDevice status writes to the API server",
            ["kind", "result"],
            registry=r,
        )
        self.writes_pending = Gauge(
            p + "status_writes_pending", "Devices with a queued heartbeat transition", registry=r
        )
        self.reports = Counter(
            p + "reports",
            "Device reports received, by outcome: accepted (new), duplicate (at or below "
            "the newest seq already taken: a resend or out of order), gap (seqs skipped)",
            ["outcome"],
            registry=r,
        )
        self.refusals = Counter(
            p + "refusals", "Requests refused, by reason", ["reason"], registry=r
        )
