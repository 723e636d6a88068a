"""kopf handlers: thin adapters from Kubernetes events to the reconcile functions."""
