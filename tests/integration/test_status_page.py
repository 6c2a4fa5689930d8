"""The admin listener's status page (``/``) and its data (``/status.json``)
on the real proxy: listeners and routes, a static and an etcd-fed pool with
each endpoint's state, the etcd feed, active streams, and calls/s and error
ratio per method over the last minute; with two worker processes, one
answer for both."""

from __future__ import annotations

import http.client
import json
import re
import threading
from pathlib import Path

import etcd_harness as etcd
import pytest
import status_stack
from admin_client import admin_block, get, two_workers, wait_for
from harness import (
    LOCALHOST,
    RequestQueue,
    Stack,
    addr,
    free_ports,
    location,
    make_config,
    proxy_logs,
    upstream,
)


@pytest.fixture
def etcd1(tmp_path: Path):
    member = etcd.single(tmp_path).start()
    try:
        yield member
    finally:
        member.stop()


def test_status_json_and_page_show_pools_feeds_and_call_rates(
    stack: Stack, etcd1: etcd.EtcdMember
) -> None:
    s = status_stack.start(stack, etcd1)
    status_stack.send_traffic(s)
    doc = status_stack.wait_counted(s.admin, 10)
    assert status_stack.counted(doc), (doc, proxy_logs(stack))
    assert (doc["ready"], doc["draining"], doc["workers"], doc["pid"]) == (
        True,
        False,
        1,
        s.proxy.pid,
    )
    assert doc["admin"] == f"{LOCALHOST}:{s.admin}"
    (listener,) = doc["listeners"]
    assert listener["addresses"] == [f"{LOCALHOST}:{s.proxy.port}"] and not listener["tls"]
    assert listener["routes"] == [
        {"path": "= /echo.Echo/ServerStream", "upstream": "streams"},
        {"path": "/echo.Echo/", "upstream": "echo"},
    ]

    pools = {p["name"]: p for p in doc["upstreams"]}
    echo, streams = pools["echo"], pools["streams"]
    # The configured methods, not /upstreams' "round_robin" for all (issue 12).
    assert (echo["policy"], echo["source"], echo["etcd"]) == ("least_conn", "static", [])
    assert (streams["policy"], streams["source"]) == ("random two", "etcd")
    eps = {e["address"]: e for e in echo["endpoints"]}
    assert [eps[a]["state"] for a in s.static] == ["up", "up"]
    assert eps[s.dead]["state"] == "failed" and eps[s.dead]["fails"] == 1
    assert eps[s.dead]["reason"].startswith("1 failed, retried in ")
    assert sum(eps[a]["connections"] for a in s.static) >= 1
    assert echo["up"] == 2
    (disc,) = streams["endpoints"]
    assert (disc["address"], disc["state"], disc["source"], disc["labels"]) == (
        s.discovered,
        "up",
        "etcd",
        {"zone": "eu-1"},
    )
    (feed,) = streams["etcd"]
    assert (feed["pid"], feed["connected"], feed["synced_once"], feed["url"]) == (
        s.proxy.pid,
        True,
        True,
        etcd1.url,
    )
    assert feed["revision"] > 0 and feed["endpoints"] == 1

    calls = doc["calls"]
    assert calls["span"] == 60 and 0 < calls["seconds"] <= 61
    unary = status_stack.method(doc, "echo.Echo", "Unary")
    assert unary is not None
    assert (unary["upstream"], unary["calls"], unary["errors"], unary["total"]) == ("echo", 8, 2, 8)
    assert unary["codes"] == {"OK": 6, "NOT_FOUND": 2}
    assert unary["error_ratio"] == 0.25 and unary["per_second"] > 0
    unknown = status_stack.method(doc, "unknown", "unknown")
    assert unknown is not None and (unknown["errors"], unknown["error_ratio"]) == (2, 1.0)
    assert unknown["codes"] == {"UNIMPLEMENTED": 2}
    assert calls["calls"] == 13 and calls["error_ratio"] == round(4 / 13, 4)

    code, headers, body = _get(s.admin, "/")
    assert code == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    page = body.decode()
    # Self-contained: no external script, style, image or font.
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", page, re.I)
    assert "@import" not in page and "url(" not in page
    embedded = re.search(r'<script type="application/json" id="initial">(.*?)</script>', page, re.S)
    assert embedded is not None
    first = json.loads(embedded.group(1))
    assert {e["address"] for e in first["upstreams"][0]["endpoints"]} == {*s.static, s.dead}
    code, headers, _ = _get(s.admin, "/status.json")
    assert headers["cache-control"] == "no-store" and headers["content-type"] == "application/json"
    assert get(s.admin, "/status.json?x=1")[0] == 200


def test_status_counts_an_open_stream_and_a_stopped_backend(stack: Stack) -> None:
    b1, b2 = stack.backend("b1"), stack.backend("b2")
    port, admin = free_ports(2)
    proxy = stack.proxy(
        make_config(
            port,
            [
                upstream(
                    "echo",
                    [addr(b1.port, "fail_timeout=60s"), addr(b2.port, "fail_timeout=60s")],
                    "hash $grpc_method consistent",
                    "connect_timeout 2s",
                )
            ],
            [location("/echo.Echo/", "grpc_pass echo")],
        )
        + admin_block(admin)
    )
    client = stack.client(proxy.port)
    q = RequestQueue(idle_limit=20)
    got: list[bytes] = []
    done: list[object] = []

    def run() -> None:
        done.append(client.bidi(q, on_message=lambda i, msg: got.append(msg)))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        q.put(b"ping")
        assert wait_for(lambda: bool(got)), proxy_logs(stack)
        (pool,) = status_stack.status(admin)["upstreams"]
        assert pool["policy"] == "hash $grpc_method consistent"
        assert pool["active"] == 1 and sum(e["active"] for e in pool["endpoints"]) == 1
    finally:
        q.close()
        t.join(20)
    assert done and getattr(done[0], "ok", False)
    served = {
        e["address"]
        for e in status_stack.status(admin)["upstreams"][0]["endpoints"]
        if e["connections"]
    }
    (busy,) = served  # hash $grpc_method: every Bidi call goes to one endpoint
    backend = b1 if busy.endswith(f":{b1.port}") else b2
    backend.stop()
    r = client.bidi(iter([b"x"]))
    assert r.ok, r
    (pool,) = status_stack.status(admin)["upstreams"]
    eps = {e["address"]: e for e in pool["endpoints"]}
    assert eps[busy]["state"] == "failed" and eps[busy]["fails"] >= 1
    assert pool["up"] == 1 and pool["active"] == 0


def test_two_workers_answer_with_both(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two proxies sharing one PROMETHEUS_MULTIPROC_DIR, as a master's
    workers do: either admin port shows both workers' connections and the
    calls of both, and rates once it has sampled twice."""
    proxies, admins = two_workers(stack, tmp_path, monkeypatch)
    shared = tmp_path / "metrics"  # two_workers' PROMETHEUS_MULTIPROC_DIR
    for proxy, n in zip(proxies, (3, 4), strict=True):
        client = stack.client(proxy.port)
        for _ in range(n):
            assert client.unary(b"x").ok

    def both(admin: int) -> bool:
        doc = status_stack.status(admin)
        unary = status_stack.method(doc, "echo.Echo", "Unary")
        (pool,) = doc["upstreams"]
        return (
            doc["workers"] == 2
            and unary is not None
            and unary["total"] == 7
            and pool["endpoints"][0]["connections"] == 2
        )

    for admin in admins:
        assert wait_for(lambda a=admin: both(a), 10), (
            status_stack.status(admin),
            proxy_logs(stack),
        )
    doc = status_stack.status(admins[0])
    assert doc["calls"]["seconds"] > 0  # sampled at every request: a window now
    assert len(list(shared.glob("status_*.json"))) == 2
    gone = proxies[1]
    gone.stop()
    assert wait_for(lambda: status_stack.status(admins[0])["workers"] == 1, 10)
    assert not (shared / f"status_{gone.pid}.json").exists()  # removed on its way out


def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(LOCALHOST, port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()
