"""Where active health checks (issue 3) meet reloads (issue 5) and the admin
listener and metrics (issue 6): an endpoint taken out by its health check
stays out across SIGHUP until it serves again, and both /upstreams and
grpc_proxy_endpoint_healthy say so."""

from __future__ import annotations

import os
import signal
from collections import Counter

from admin_client import admin_block, scrape, total, upstreams, wait_for
from harness import (
    EchoClient,
    ProxyProcess,
    Stack,
    addr,
    free_ports,
    location,
    make_config,
    proxy_logs,
    upstream,
)

from grpc_proxy_demo.echo import EchoBackend

INTERVAL_MS = 300


def backend(stack: Stack, name: str) -> EchoBackend:
    b = EchoBackend(name, health=True)
    b.start()
    stack.defer(b.stop)
    return b


def config(port: int, admin: int, servers: list[str], read_timeout: str) -> str:
    up = upstream(
        "echo",
        servers,
        "connect_timeout 2s",
        f"health_check interval={INTERVAL_MS}ms timeout=500ms fails=1 passes=1",
    )
    loc = location("/echo.Echo/", "grpc_pass echo", f"grpc_read_timeout {read_timeout}")
    return make_config(port, [up], [loc]) + admin_block(admin)


def spread(client: EchoClient, n: int) -> Counter[str]:
    return Counter(
        r.backend or "?" if r.ok else r.code.name
        for r in (client.unary(b"x", timeout=5) for _ in range(n))
    )


def health_of(admin: int, port: int) -> tuple[bool, float]:
    """(healthy in /upstreams, grpc_proxy_endpoint_healthy) of one endpoint."""
    eps = {e["address"]: e for e in upstreams(admin)["echo"]["endpoints"]}
    endpoint = f"127.0.0.1:{port}"
    return (
        eps[endpoint]["healthy"],
        total(scrape(admin), "grpc_proxy_endpoint_healthy", upstream="echo", endpoint=endpoint),
    )


def sighup(proxy: ProxyProcess, text: str) -> None:
    done = proxy.stderr().count("configuration reloaded")
    proxy.config_path.write_text(text)
    os.kill(proxy.pid, signal.SIGHUP)
    assert wait_for(lambda: proxy.stderr().count("configuration reloaded") > done), (
        proxy.stderr_tail()
    )


def test_an_unhealthy_endpoint_stays_out_across_a_reload_until_it_serves(stack: Stack) -> None:
    a, b = backend(stack, "a"), backend(stack, "b")
    port, admin = free_ports(2)
    servers = [addr(a.port), addr(b.port)]
    proxy = stack.proxy(config(port, admin, servers, "60s"))
    client = stack.client(port)
    assert spread(client, 20) == {"a": 10, "b": 10}, proxy_logs(stack)
    assert health_of(admin, a.port) == (True, 1)

    a.set_serving(False)
    assert wait_for(lambda: health_of(admin, a.port) == (False, 0)), proxy_logs(stack)
    assert spread(client, 20) == {"b": 20}

    # A reload (another read timeout; the health_check is unchanged) must not
    # forget what the checks found: "a" stays out from the first call on.
    sighup(proxy, config(port, admin, servers, "30s"))
    assert spread(client, 20) == {"b": 20}, proxy_logs(stack)
    assert health_of(admin, a.port) == (False, 0)
    # ... and the new generation's checks keep it out for several intervals.
    assert not wait_for(lambda: spread(client, 4)["a"] > 0, timeout=INTERVAL_MS / 1000 * 5)
    assert health_of(admin, a.port) == (False, 0)

    a.set_serving(True)
    assert wait_for(lambda: health_of(admin, a.port) == (True, 1)), proxy_logs(stack)
    assert spread(client, 20) == {"a": 10, "b": 10}
    assert "is healthy again" in proxy.stderr()


def test_a_reload_that_adds_an_endpoint_health_checks_it(stack: Stack) -> None:
    a, b = backend(stack, "a"), backend(stack, "b")
    b.set_serving(False)  # not serving from the start
    port, admin = free_ports(2)
    proxy = stack.proxy(config(port, admin, [addr(a.port)], "60s"))
    client = stack.client(port)
    assert spread(client, 6) == {"a": 6}
    sighup(proxy, config(port, admin, [addr(a.port), addr(b.port)], "60s"))
    assert wait_for(lambda: health_of(admin, b.port) == (False, 0)), proxy_logs(stack)
    assert spread(client, 20) == {"a": 20}
    b.set_serving(True)
    assert wait_for(lambda: health_of(admin, b.port) == (True, 1)), proxy_logs(stack)
    assert spread(client, 20) == {"a": 10, "b": 10}
