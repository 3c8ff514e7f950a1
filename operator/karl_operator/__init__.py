"""Karl's Kubernetes operator (kopf): reconciles KarlCluster resources (arrives in a later issue)."""
