"""Active health checks (``health_check``) through the real proxy: a backend
reporting NOT_SERVING is taken out and brought back, a SIGSTOPped backend is
taken out by the probe timeout, backups take over when every primary is
unhealthy, and with nothing healthy calls fail at once with UNAVAILABLE."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter

import grpc
from harness import (
    EchoClient,
    Result,
    Stack,
    addr,
    free_port,
    location,
    make_config,
    proxy_logs,
    upstream,
)

from grpc_proxy_demo.echo import EchoBackend, EchoProcess

INTERVAL = 0.5  # s; "within 2 intervals" is checked with a generous margin below


def _backend(stack: Stack, name: str) -> EchoBackend:
    b = EchoBackend(name, health=True)
    b.start()
    stack.defer(b.stop)
    return b


def _client(stack: Stack, servers: list[str], check: str) -> EchoClient:
    proxy = stack.proxy(
        make_config(
            free_port(),
            [upstream("echo", servers, "connect_timeout 2s", f"health_check {check}")],
            [location("/", "grpc_pass echo")],
        )
    )
    return stack.client(proxy.port)


def _spread(client: EchoClient, n: int) -> tuple[Counter[str | None], list[Result]]:
    results = [client.unary(b"x", timeout=5) for _ in range(n)]
    return Counter(r.backend for r in results if r.ok), [r for r in results if not r.ok]


def _wait_for(pred: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_not_serving_backend_goes_out_within_two_intervals_and_comes_back(stack: Stack) -> None:
    a, b = _backend(stack, "a"), _backend(stack, "b")
    client = _client(
        stack,
        [addr(a.port), addr(b.port)],
        f"interval={int(INTERVAL * 1000)}ms timeout=400ms fails=1 passes=1",
    )
    counts, failed = _spread(client, 40)
    assert not failed and counts == {"a": 20, "b": 20}, (counts, proxy_logs(stack))

    a.set_serving(False)
    time.sleep(2 * INTERVAL + 0.4 + 0.3)  # two intervals, one probe timeout, slack
    counts, failed = _spread(client, 40)
    assert not failed and counts == {"b": 40}, (counts, proxy_logs(stack))
    assert "is unhealthy: NOT_SERVING" in stack.proxies[0].stderr()

    a.set_serving(True)
    time.sleep(2 * INTERVAL + 0.4 + 0.3)
    counts, failed = _spread(client, 40)
    assert not failed and counts == {"a": 20, "b": 20}, (counts, proxy_logs(stack))
    assert "is healthy again" in stack.proxies[0].stderr()
    # Probes are not calls: the echo service saw only the 120 client calls.
    assert a.events.count() + b.events.count() == 120


def test_probe_failures_need_fails_in_a_row(stack: Stack) -> None:
    a, b = _backend(stack, "a"), _backend(stack, "b")
    client = _client(
        stack, [addr(a.port), addr(b.port)], "interval=300ms timeout=300ms fails=3 passes=2"
    )
    a.set_serving(False)
    assert _wait_for(lambda: _spread(client, 4)[0] == {"b": 4}, 10.0), proxy_logs(stack)
    log = stack.proxies[0].stderr()
    assert log.count("is unhealthy") == 1
    a.set_serving(True)
    assert _wait_for(lambda: _spread(client, 4)[0] == {"a": 2, "b": 2}, 10.0), proxy_logs(stack)


def test_sigstopped_backend_is_taken_out_by_probe_timeout(stack: Stack) -> None:
    a = EchoProcess("a", health=True, stderr_path=stack.workdir / "echo-a.stderr")
    stack.defer(a.kill)
    a.start()
    b = _backend(stack, "b")
    client = _client(
        stack, [addr(a.port), addr(b.port)], "interval=500ms timeout=300ms fails=2 passes=1"
    )
    counts, failed = _spread(client, 20)
    assert not failed and counts == {"a": 10, "b": 10}, counts
    assert a.pid is not None
    os.kill(a.pid, signal.SIGSTOP)
    try:
        time.sleep(2 * 0.5 + 2 * 0.3 + 0.6)  # two failed probes, with slack
        # Without the health check half of these would hang until their deadline.
        counts, failed = _spread(client, 30)
        assert not failed and counts == {"b": 30}, (counts, failed[:1], proxy_logs(stack))
        assert "is unhealthy: timeout" in stack.proxies[0].stderr()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(a.pid, signal.SIGCONT)
        a.stop()


def test_all_primaries_unhealthy_use_backup_then_fail_fast(stack: Stack) -> None:
    p1, p2, spare = _backend(stack, "p1"), _backend(stack, "p2"), _backend(stack, "spare")
    proxy = stack.proxy(
        make_config(
            free_port(),
            [
                upstream(
                    "echo",
                    [addr(p1.port), addr(p2.port), addr(spare.port, "backup")],
                    "connect_timeout 5s",
                    "health_check interval=300ms timeout=300ms",
                )
            ],
            [location("/", "grpc_pass echo")],
        )
    )
    client = stack.client(proxy.port)
    p1.set_serving(False)
    p2.set_serving(False)
    assert _wait_for(lambda: _spread(client, 6)[0] == {"spare": 6}, 10.0), proxy_logs(stack)
    spare.set_serving(False)
    assert _wait_for(lambda: not client.unary(b"x", timeout=5).ok, 10.0)
    r = client.unary(b"x", timeout=5)
    assert r.code == grpc.StatusCode.UNAVAILABLE
    assert r.details == "no healthy upstream in echo"
    assert r.elapsed < 2.0  # no connect attempt (connect_timeout is 5s)
    p2.set_serving(True)
    assert _wait_for(lambda: _spread(client, 6)[0] == {"p2": 6}, 10.0), proxy_logs(stack)


def test_unreachable_endpoint_fails_probes_without_passive_failures(stack: Stack) -> None:
    """A dead port fails its probes (connect refused) and is out before any
    call tries it: no call fails or waits on it."""
    live = _backend(stack, "live")
    dead = free_port()
    client = _client(stack, [addr(dead), addr(live.port)], "interval=300ms timeout=300ms fails=1")
    assert _wait_for(lambda: "is unhealthy" in stack.proxies[0].stderr(), 5.0), proxy_logs(stack)
    counts, failed = _spread(client, 20)
    assert not failed and counts == {"live": 20}
