"""The failover controller: moves a dead media node's calls to the survivors (docs/clustering.md)."""
