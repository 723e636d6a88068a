"""The only code that talks to registries, model sources, Kubernetes and pip."""
