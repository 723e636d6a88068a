"""The edge-node agent: enrol, long-poll signed desired state, pull and verify images
through the gateway, run them through a :class:`~edgefleet_node.agent.runtime.Runtime`,
probe, roll back, report — and keep serving while offline.

Synchronous code with a few threads; only the standard library and ``cryptography``
(the Docker runtime talks to the engine's socket with ``http.client``: ``docker_api``).
``docs/agent.md`` describes the state directory, the CLI and the failure behaviour.
"""
