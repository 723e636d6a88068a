"""The device protocol: what the gateway and the agent say to each other.

One copy, shared: the gateway (``edgefleet.gateway``) and the agent
(``edgefleet_node.agent``) both import these types, so the two ends cannot drift.
Pure code (standard library and ``cryptography``); no I/O. ``docs/protocol.md``
describes the wire format and the security properties.

- :mod:`~edgefleet_node.protocol.wire`: endpoints, headers, size limits, strict field
  readers, RFC 3339 times.
- :mod:`~edgefleet_node.protocol.dsse`: signed envelopes (DSSE, ECDSA P-256).
- :mod:`~edgefleet_node.protocol.enroll`: bootstrap tokens, CA pinning, enrol/renew.
- :mod:`~edgefleet_node.protocol.desired`: the signed desired-state document and the
  device-side rules that refuse replays, downgrades, foreign and stale documents.
- :mod:`~edgefleet_node.protocol.workload`: one workload of that document (and its
  probe).
- :mod:`~edgefleet_node.protocol.trust`: the trust bundle (gateway CAs, signing keys).
- :mod:`~edgefleet_node.protocol.report`: what the device reports.
"""
