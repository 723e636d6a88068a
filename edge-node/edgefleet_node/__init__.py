"""edgefleet's device side: the shared protocol and verification code the agent uses.

Installs without kopf or the Kubernetes client (it must fit on a Raspberry Pi).
"""
