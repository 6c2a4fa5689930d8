"""Endpoints discovered in etcd: value formats, watch state, the etcd JSON
gateway client, the per-upstream feed task, and service registration."""
