"""Harnesses that start real services on loopback for tests, benchmarks and the demo:
a Kubernetes control plane, an OCI registry, a Docker engine, base images, models."""
