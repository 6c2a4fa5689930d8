"""Endpoint state, pool snapshots and the balancing policies."""
