"""Pure OCI types and validating parsers, shared by the agent and the operator.

One copy: the operator's image assembly (``edgefleet.domain.oci``) imports these,
and the agent uses them to read what it pulls. Only the standard library.
"""
