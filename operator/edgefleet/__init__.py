"""edgefleet: a Kubernetes-native GitOps control plane for ML inference on edge fleets."""
