"""Pure domain logic: image assembly, signing payloads, status transitions. No I/O clients."""
