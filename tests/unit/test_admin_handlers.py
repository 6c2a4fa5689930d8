"""Admin endpoints without sockets: routing, readiness (drain, etcd sync,
listeners), and the /upstreams document."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from proxy.admin.handlers import AdminHandlers
from proxy.balancing.pool import build_pools
from proxy.config import parse_string
from proxy.metrics.sources import Sources
from proxy.relay.relay import Relay

CONFIG = """
upstream api {
    server 127.0.0.1:5001 weight=3 meta=zone:a,tier:gold;
    server 127.0.0.1:5002 backup;
    server 127.0.0.1:5003 down;
}
server { listen 127.0.0.1:8080; location / { grpc_pass api; } }
"""


def handlers(**providers: object) -> AdminHandlers:
    config = parse_string(CONFIG, "t.conf")
    relay = Relay(build_pools(config.upstreams, {}), lambda: 100.0)
    sources = Sources(relay, **providers)  # type: ignore[arg-type]
    sources.listening = True
    return AdminHandlers(sources, lambda: (b"m 1\n", "text/plain"))


def test_routes_404_405_and_plain_endpoints() -> None:
    h = handlers()
    assert h.route("GET", "/nope").status == 404
    assert h.route("POST", "/nope").status == 404
    r = h.route("POST", "/healthz")
    assert r is not None and r.status == 405 and ("Allow", "GET") in r.headers
    assert h.route("DELETE", "/metrics").status == 405  # type: ignore[union-attr]
    assert h.route("GET", "/healthz").status == 200  # type: ignore[union-attr]
    assert h.route("GET", "/readyz?verbose=1").status == 200  # type: ignore[union-attr]
    assert h.route("GET", "/metrics") is None  # rendered by render_metrics
    assert h.render_metrics().body == b"m 1\n"


def test_readyz_is_503_while_draining() -> None:
    draining = [False]
    h = handlers(draining=lambda: draining[0])
    assert h.route("GET", "/readyz").status == 200  # type: ignore[union-attr]
    draining[0] = True
    r = h.route("GET", "/readyz")
    assert r is not None and r.status == 503 and b"draining" in r.body
    assert h.route("GET", "/healthz").status == 200  # type: ignore[union-attr]


def test_readyz_waits_for_listeners_and_every_etcd_pool() -> None:
    status = SimpleNamespace(connected=True, synced_once=False, revision=0)
    h = handlers(etcd=lambda: {"api": status})
    h.sources.listening = False
    r = h.route("GET", "/readyz")
    assert r is not None and r.status == 503 and b"listeners" in r.body
    h.sources.listening = True
    r = h.route("GET", "/readyz")
    assert r is not None and r.status == 503 and b"etcd" in r.body
    status.synced_once = True
    assert h.route("GET", "/readyz").status == 200  # type: ignore[union-attr]
    h.sources.ready_checks.append(lambda: "health checks pending")
    assert h.route("GET", "/readyz").body == b"health checks pending\n"  # type: ignore[union-attr]


def test_upstreams_json_matches_the_config() -> None:
    h = handlers()
    r = h.route("GET", "/upstreams")
    assert r is not None and r.content_type == "application/json"
    (pool,) = json.loads(r.body)["upstreams"]
    assert (pool["name"], pool["source"], pool["policy"], pool["etcd"]) == (
        "api",
        "static",
        "round_robin",
        None,
    )
    eps = {e["address"]: e for e in pool["endpoints"]}
    assert eps["127.0.0.1:5001"]["labels"] == {"zone": "a", "tier": "gold"}
    assert eps["127.0.0.1:5001"]["weight"] == 3
    assert eps["127.0.0.1:5002"]["backup"] is True
    assert eps["127.0.0.1:5003"]["down"] is True and eps["127.0.0.1:5003"]["healthy"] is False
    assert all(
        e["active"] == 0 and e["fails"] == 0 and e["source"] == "static" for e in eps.values()
    )


def test_upstreams_json_shows_etcd_state() -> None:
    status = SimpleNamespace(
        connected=True,
        synced_once=True,
        revision=42,
        events_applied=5,
        resyncs=1,
        last_message_at=99.0,
    )
    h = handlers(etcd=lambda: {"api": status})
    (pool,) = json.loads(h.route("GET", "/upstreams").body)["upstreams"]  # type: ignore[union-attr]
    assert pool["source"] == "etcd"
    assert pool["etcd"] == {
        "connected": True,
        "synced_once": True,
        "revision": 42,
        "events_applied": 5,
        "resyncs": 1,
        "seconds_since_last_message": 1.0,
    }


@pytest.mark.parametrize(
    "method,shown",
    [
        ("", "round_robin"),
        ("least_conn;", "least_conn"),
        ("random;", "random"),
        ("random two;", "random two"),
        ("random two least_conn;", "random two"),
        ("ip_hash;", "ip_hash"),
        ("hash $http_x_user;", "hash $http_x_user"),
        ("hash $grpc_method consistent;", "hash $grpc_method consistent"),
        ("least_time;", "least_time"),
    ],
)
def test_upstreams_json_shows_the_configured_method(method: str, shown: str) -> None:
    config = parse_string(
        f"upstream api {{ {method} server 127.0.0.1:5001; }}\n"
        "server { listen 127.0.0.1:8080; location / { grpc_pass api; }\n"
        "         location /direct/ { grpc_pass 127.0.0.1:5009; } }\n",
        "t.conf",
    )
    relay = Relay(build_pools(config.upstreams, {}), lambda: 100.0)
    h = AdminHandlers(Sources(relay), lambda: (b"", "text/plain"))
    pools = {p["name"]: p for p in json.loads(h.route("GET", "/upstreams").body)["upstreams"]}
    assert pools["api"]["policy"] == shown
    direct = [p for name, p in pools.items() if name != "api"]
    assert [p["policy"] for p in direct] == ["round_robin"]
