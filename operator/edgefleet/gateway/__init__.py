"""The device gateway: the one HTTPS endpoint devices talk to (``edgefleet gateway``).

- :mod:`~edgefleet.gateway.config`: ``EDGEFLEET_*`` settings.
- :mod:`~edgefleet.gateway.app`: the aiohttp application, its routes and middlewares.
- :mod:`~edgefleet.gateway.accept`: the accept loop: admission before the TLS handshake.
- :mod:`~edgefleet.gateway.admission`: overload control, JSON errors, body limits.
- :mod:`~edgefleet.gateway.identity`: the device behind a client certificate.
- :mod:`~edgefleet.gateway.sessions`: long-polls, heartbeats, offline detection.
- :mod:`~edgefleet.gateway.status`: the EdgeDevice status writer (server-side apply).
- :mod:`~edgefleet.gateway.enrol_routes`: CA bundle, enrol, renew;
- :mod:`~edgefleet.gateway.device_routes`: the desired-state long-poll, reports.
- :mod:`~edgefleet.gateway.oci`: the ``/v2/`` registry proxy.
- :mod:`~edgefleet.gateway.metrics`: Prometheus metrics.
- :mod:`~edgefleet.gateway.server`: the composition root.

``docs/gateway.md`` describes behaviour, configuration and scaling.
"""
