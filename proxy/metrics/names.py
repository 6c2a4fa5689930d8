"""Every metric the proxy exports: its name, type, labels and help. The names
and labels are a contract (dashboards and alerts use them); docs/metrics.md
describes each, and a unit test checks the dashboard uses only these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# prometheus-client's multiprocess modes for gauges ("live": dead workers' series drop out).
GaugeMode = Literal[
    "all",
    "liveall",
    "min",
    "livemin",
    "max",
    "livemax",
    "sum",
    "livesum",
    "mostrecent",
    "livemostrecent",
]

# Call duration buckets, seconds: 0.5 ms to 60 s.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    kind: str  # counter, gauge, histogram
    labels: tuple[str, ...]
    help: str
    # How a gauge merges across worker processes (prometheus-client's
    # multiprocess_mode); "live" modes drop the series of dead workers.
    multiprocess_mode: GaugeMode = "all"


REQUESTS = MetricDef(
    "grpc_proxy_requests_total",
    "counter",
    ("service", "method", "upstream", "code"),
    "gRPC calls finished, by final status code.",
)
DURATION = MetricDef(
    "grpc_proxy_request_duration_seconds",
    "histogram",
    ("service", "method", "upstream"),
    "Call duration at the proxy, from the request headers to the end of the call.",
)
MESSAGES = MetricDef(
    "grpc_proxy_messages_total",
    "counter",
    ("service", "method", "direction"),
    "gRPC messages relayed (direction request: client to upstream; response: back).",
)
BYTES = MetricDef(
    "grpc_proxy_bytes_total",
    "counter",
    ("direction",),
    "DATA payload bytes received from clients (request) and upstreams (response).",
)
ACTIVE_STREAMS = MetricDef(
    "grpc_proxy_active_streams", "gauge", ("upstream",), "Calls in progress.", "livesum"
)
DOWNSTREAM_CONNECTIONS = MetricDef(
    "grpc_proxy_downstream_connections", "gauge", (), "Open client connections.", "livesum"
)
UPSTREAM_CONNECTIONS = MetricDef(
    "grpc_proxy_upstream_connections",
    "gauge",
    ("upstream", "endpoint"),
    "Open HTTP/2 connections to each endpoint.",
    "livesum",
)
UPSTREAM_REQUESTS = MetricDef(
    "grpc_proxy_upstream_requests_total",
    "counter",
    ("upstream", "endpoint", "code"),
    "Calls finished, by the endpoint that served their last attempt.",
)
ENDPOINT_HEALTHY = MetricDef(
    "grpc_proxy_endpoint_healthy",
    "gauge",
    ("upstream", "endpoint"),
    "1 if the endpoint may take calls (not down, not failed out, health check passing).",
    "livemin",
)
RETRIES = MetricDef(
    "grpc_proxy_upstream_retries_total",
    "counter",
    ("upstream",),
    "Attempts on another endpoint (or again) after a connect failure or a refused stream.",
)
TIMEOUTS = MetricDef(
    "grpc_proxy_timeouts_total",
    "counter",
    ("kind",),
    "Timeouts by kind: read, send, connect, deadline, keepalive.",
)
CONFIG_RELOADS = MetricDef(
    "grpc_proxy_config_reloads_total",
    "counter",
    ("result",),
    "Configuration reloads, by result (success, failure).",
)
ETCD_CONNECTED = MetricDef(
    "grpc_proxy_etcd_connected",
    "gauge",
    ("upstream",),
    "1 while the etcd watch of an etcd-fed pool is connected.",
    "livemin",
)
ETCD_REVISION = MetricDef(
    "grpc_proxy_etcd_revision",
    "gauge",
    ("upstream",),
    "The etcd revision an etcd-fed pool has applied.",
    "livemax",
)
ETCD_RESYNCS = MetricDef(
    "grpc_proxy_etcd_resyncs_total",
    "counter",
    ("upstream",),
    "Full re-reads of an etcd-fed pool (after a compaction or a lost watch).",
)
PROTOCOL_ERRORS = MetricDef(
    "grpc_proxy_http2_protocol_errors_total",
    "counter",
    ("kind",),
    "HTTP/2 errors by kind: reset (a peer reset a stream with an error code), "
    "bad_frame (a stream or connection error found in what a peer sent), "
    "http1 (HTTP/1 on a gRPC port), flood.",
)
ACCESS_LOG_DROPPED = MetricDef(
    "grpc_proxy_access_log_dropped_total",
    "counter",
    (),
    "Access log lines dropped because the log could not keep up.",
)

ALL: tuple[MetricDef, ...] = (
    REQUESTS,
    DURATION,
    MESSAGES,
    BYTES,
    ACTIVE_STREAMS,
    DOWNSTREAM_CONNECTIONS,
    UPSTREAM_CONNECTIONS,
    UPSTREAM_REQUESTS,
    ENDPOINT_HEALTHY,
    RETRIES,
    TIMEOUTS,
    CONFIG_RELOADS,
    ETCD_CONNECTED,
    ETCD_REVISION,
    ETCD_RESYNCS,
    PROTOCOL_ERRORS,
    ACCESS_LOG_DROPPED,
)


def exposed_names(m: MetricDef) -> tuple[str, ...]:
    """The sample names a scrape shows for ``m`` (what PromQL refers to)."""
    if m.kind == "histogram":
        return (f"{m.name}_bucket", f"{m.name}_count", f"{m.name}_sum")
    return (m.name,)
