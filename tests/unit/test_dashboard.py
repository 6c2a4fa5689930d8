"""conf/grafana-dashboard.json and conf/prometheus.yml use only metrics the
proxy exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from proxy.metrics.names import ALL, exposed_names

CONF = Path(__file__).resolve().parents[2] / "conf"


def _queries(node: object) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition", "query") and isinstance(value, str):
                out.append(value)
            else:
                out += _queries(value)
    elif isinstance(node, list):
        for item in node:
            out += _queries(item)
    return out


def test_dashboard_loads_and_uses_only_defined_metrics() -> None:
    dash = json.loads((CONF / "grafana-dashboard.json").read_text())
    queries = _queries(dash)
    assert len(queries) >= 15
    used = {name for q in queries for name in re.findall(r"\bgrpc_proxy_[a-z0-9_]+", q)}
    defined = {n for m in ALL for n in exposed_names(m)}
    assert used, "no metric in the dashboard"
    assert used <= defined, used - defined
    # What the issue asks to see: rate by code, latency by method, active
    # streams, endpoint health, etcd state.
    assert {
        "grpc_proxy_requests_total",
        "grpc_proxy_request_duration_seconds_bucket",
        "grpc_proxy_active_streams",
        "grpc_proxy_endpoint_healthy",
        "grpc_proxy_etcd_connected",
        "grpc_proxy_etcd_revision",
    } <= used
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_scrapes_the_admin_port() -> None:
    text = (CONF / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in text
    assert re.search(r'targets: \["[\w.-]+:9901"(, "[\w.-]+:9901")*\]', text)
