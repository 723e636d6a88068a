"""Verification of what devices receive: cosign-format image signatures."""
