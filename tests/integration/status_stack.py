"""The proxy set up for the status page tests (tests/integration/
test_status_page.py and tests/browser/): an admin listener, a static pool of
two echo backends plus a dead address, an etcd-fed pool, and some traffic
with errors in it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import etcd_harness as etcd
from admin_client import admin_block, get, wait_for
from harness import (
    LOCALHOST,
    EchoClient,
    ProxyProcess,
    Stack,
    addr,
    free_port,
    free_ports,
    location,
    make_config,
    proxy_logs,
    upstream,
)

PREFIX = "/services/status/"
UNARY_OK, UNARY_NOT_FOUND, STREAMS, UNROUTED = 6, 2, 3, 2


@dataclass
class StatusStack:
    proxy: ProxyProcess
    admin: int
    client: EchoClient
    static: list[str]  # the two live static endpoints
    dead: str  # a static endpoint nothing listens on
    discovered: str  # the etcd-fed endpoint


def start(stack: Stack, etcd_member: etcd.EtcdMember) -> StatusStack:
    b1, b2, b3 = stack.backend("b1"), stack.backend("b2"), stack.backend("b3")
    dead = free_port()
    kv = etcd.Client(etcd_member.url)
    kv.put(
        PREFIX + "b3", json.dumps({"address": f"{LOCALHOST}:{b3.port}", "meta": {"zone": "eu-1"}})
    )
    port, admin = free_ports(2)
    config = make_config(
        port,
        [
            upstream(
                "echo",
                [addr(b1.port), addr(b2.port), addr(dead, "max_fails=1", "fail_timeout=120s")],
                "least_conn",
                "connect_timeout 2s",
            ),
            upstream(
                "streams",
                [],
                f"etcd {etcd_member.url} prefix={PREFIX}",
                "random two",
                "etcd_dial_timeout 1s",
            ),
        ],
        [
            location("/echo.Echo/ServerStream", "grpc_pass streams", exact=True),
            location("/echo.Echo/", "grpc_pass echo"),
        ],
    ) + admin_block(admin)
    proxy = stack.proxy(config)
    assert wait_for(lambda: get(admin, "/readyz")[0] == 200, 15), proxy_logs(stack)
    return StatusStack(
        proxy,
        admin,
        stack.client(proxy.port),
        [f"{LOCALHOST}:{b1.port}", f"{LOCALHOST}:{b2.port}"],
        f"{LOCALHOST}:{dead}",
        f"{LOCALHOST}:{b3.port}",
    )


def send_traffic(s: StatusStack) -> None:
    """Unary calls (some NOT_FOUND), server streams to the etcd pool, calls
    no location matches; one call tries the dead endpoint (then another)."""
    for _ in range(UNARY_OK):
        r = s.client.unary(b"x")
        assert r.ok, r
    for _ in range(UNARY_NOT_FOUND):
        assert s.client.unary(b"x", metadata=[("x-status", "5")]).code.name == "NOT_FOUND"
    for _ in range(STREAMS):
        r = s.client.server_stream(b"abc", metadata=[("x-count", "2")])
        assert r.ok and r.backend == "b3", r
    for _ in range(UNROUTED):
        assert s.client.unary(b"x", path="/nowhere.Svc/Call").code.name == "UNIMPLEMENTED"


def status(admin: int) -> dict[str, Any]:
    code, body = get(admin, "/status.json")
    assert code == 200, (code, body[:300])
    doc = json.loads(body)
    assert isinstance(doc, dict)
    return doc


def method(doc: dict[str, Any], service: str, name: str) -> dict[str, Any] | None:
    for m in doc["calls"]["methods"]:
        if (m["service"], m["method"]) == (service, name):
            return m  # type: ignore[no-any-return]
    return None


def counted(doc: dict[str, Any]) -> bool:
    """Every call of ``send_traffic`` is in the window's rates."""
    unary = method(doc, "echo.Echo", "Unary")
    streams = method(doc, "echo.Echo", "ServerStream")
    unknown = method(doc, "unknown", "unknown")
    return (
        doc["calls"]["seconds"] > 0
        and unary is not None
        and streams is not None
        and unknown is not None
        and unary["calls"] == UNARY_OK + UNARY_NOT_FOUND
        and streams["calls"] == STREAMS
        and unknown["calls"] == UNROUTED
    )


def wait_counted(admin: int, timeout: float) -> dict[str, Any]:
    """/status.json once ``counted`` holds, or the last one after ``timeout``."""
    deadline = time.monotonic() + timeout
    doc = status(admin)
    while not counted(doc) and time.monotonic() < deadline:
        time.sleep(0.2)
        doc = status(admin)
    return doc
