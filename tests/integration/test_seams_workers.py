"""Where worker processes (issue 5) meet metrics, the admin listener and the
access log (issue 6): a real master with two workers, real grpcio calls, one
scrape of /metrics, the access log file read back, SIGKILL and SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from admin_client import admin_block, scrape, status, total, wait_for
from harness import (
    ProxyProcess,
    Stack,
    addr,
    free_ports,
    location,
    make_config,
    proxy_logs,
    run_in_threads,
    tag,
    upstream,
)

CLIENTS = 16  # one connection each: the kernel spreads them over both workers
CALLS = 6  # per client: OK ones, plus one NOT_FOUND each


def live_workers(proxy: ProxyProcess) -> list[int]:
    return [
        c.pid
        for c in psutil.Process(proxy.pid).children()
        if c.is_running() and c.status() != psutil.STATUS_ZOMBIE
    ]


def wait_workers(proxy: ProxyProcess, n: int, exclude: set[int], timeout: float = 20) -> list[int]:
    pids: list[int] = []
    ok = wait_for(
        lambda: len(pids := live_workers(proxy)) == n and not set(pids) & exclude, timeout
    )
    pids = live_workers(proxy)
    assert ok, (pids, exclude, proxy.stderr_tail())
    return pids


def accepted_by(pid: int, port: int) -> int:
    """Established client connections a worker holds on the listen ``port``."""
    return sum(
        1
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def two_workers(stack: Stack, log_path: Path | None = None) -> tuple[ProxyProcess, int, list[int]]:
    b1 = stack.backend("b1")
    port, admin = free_ports(2)
    server = [f"access_log {log_path}"] if log_path else []
    config = (
        "shutdown_timeout 5s;\n"
        + make_config(
            port,
            [upstream("echo", [addr(b1.port)])],
            [location("/echo.Echo/", "grpc_pass echo")],
            worker_processes=2,
            server_directives=server,
        )
        + admin_block(admin)
    )
    proxy = stack.proxy(config)
    pids = wait_workers(proxy, 2, set())
    assert wait_for(lambda: status(admin, "/readyz") == 200), proxy_logs(stack)
    return proxy, admin, pids


def test_one_scrape_adds_up_both_workers_and_each_call_is_logged_once(
    stack: Stack, tmp_path: Path
) -> None:
    log_path = tmp_path / "access.log"
    proxy, admin, pids = two_workers(stack, log_path)
    clients = [stack.client(proxy.port) for _ in range(CLIENTS)]

    def calls(i: int) -> list[str]:
        codes = []
        for n in range(CALLS):
            md = [tag()] + ([("x-status", "5")] if n == 0 else [])
            codes.append(clients[i].unary(b"x", metadata=md, timeout=10).code.name)
        return codes

    results = run_in_threads(calls, CLIENTS, timeout=60)
    assert all(r == ["NOT_FOUND"] + ["OK"] * (CALLS - 1) for r in results), results
    # Both workers served calls: each holds some of the clients' connections.
    per_worker = {pid: accepted_by(pid, proxy.port) for pid in pids}
    assert sum(per_worker.values()) == CLIENTS and all(per_worker.values()), per_worker

    # Each worker moves its counts to the shared files once a second: poll,
    # then judge one scrape as a whole.
    calls_made = CLIENTS * CALLS
    req = "grpc_proxy_requests_total"
    assert wait_for(lambda: total(scrape(admin), req) == calls_made), scrape(admin)
    m = scrape(admin)
    assert total(m, req, method="Unary", upstream="echo", code="OK") == CLIENTS * (CALLS - 1)
    assert total(m, req, method="Unary", upstream="echo", code="NOT_FOUND") == CLIENTS
    assert total(m, "grpc_proxy_request_duration_seconds_count", method="Unary") == calls_made
    assert total(m, "grpc_proxy_messages_total", direction="request") == calls_made
    assert total(m, "grpc_proxy_upstream_requests_total", upstream="echo") == calls_made
    assert total(m, "grpc_proxy_downstream_connections") == CLIENTS
    assert total(m, "grpc_proxy_active_streams") == 0

    # The access log: both workers append to one file; one whole line per call.
    def lines() -> list[str]:
        return log_path.read_text().splitlines() if log_path.exists() else []

    assert wait_for(lambda: len(lines()) >= calls_made), (len(lines()), proxy_logs(stack))
    time.sleep(1.5)  # a duplicate would come with the next flush
    got = lines()
    assert len(got) == calls_made, (len(got), got[:3])
    assert all(
        re.search(r'"POST /echo\.Echo/Unary HTTP/2\.0" 200 .* (OK|NOT_FOUND) ', ln) for ln in got
    ), [ln for ln in got if "Unary" not in ln][:3]
    assert sum(" NOT_FOUND " in ln for ln in got) == CLIENTS


def test_a_killed_worker_is_replaced_and_its_live_gauges_leave_the_scrape(stack: Stack) -> None:
    proxy, admin, pids = two_workers(stack)
    clients = [stack.client(proxy.port) for _ in range(CLIENTS)]
    assert all(c.unary(b"x", timeout=10).ok for c in clients), proxy_logs(stack)
    per_worker = {pid: accepted_by(pid, proxy.port) for pid in pids}
    assert all(per_worker.values()), per_worker
    gauge = "grpc_proxy_downstream_connections"
    assert wait_for(lambda: total(scrape(admin), gauge) == CLIENTS), scrape(admin)
    assert total(scrape(admin), "grpc_proxy_upstream_connections", upstream="echo") == 2

    victim, survivor = pids
    os.kill(victim, signal.SIGKILL)
    new = [p for p in wait_workers(proxy, 2, {victim}) if p != survivor]
    assert len(new) == 1
    # The dead worker's connections went with it; its gauges must leave the
    # merged scrape (the replacement has no client connection yet).
    left = per_worker[survivor]
    assert wait_for(
        lambda: total(scrape(admin), gauge) == left and accepted_by(survivor, proxy.port) == left
    ), (total(scrape(admin), gauge), left, proxy_logs(stack))
    m = scrape(admin)
    assert total(m, "grpc_proxy_upstream_connections", upstream="echo") == 1
    # Counters never go down: the dead worker's calls still count.
    assert total(m, "grpc_proxy_requests_total", code="OK") == CLIENTS
    # The replacement serves: calls on fresh connections all work.
    assert all(stack.client(proxy.port).unary(b"x", timeout=10).ok for _ in range(8))


@pytest.mark.parametrize("workers", [1, 2])
def test_readyz_turns_503_on_drain_healthz_stays_200_and_the_slow_call_succeeds(
    stack: Stack, workers: int
) -> None:
    b1 = stack.backend("b1")
    port, admin = free_ports(2)
    config = (
        "shutdown_timeout 10s;\n"
        + make_config(
            port,
            [upstream("echo", [addr(b1.port)])],
            [location("/echo.Echo/", "grpc_pass echo")],
            worker_processes=workers,
        )
        + admin_block(admin)
    )
    proxy = stack.proxy(config)
    if workers > 1:
        wait_workers(proxy, workers, set())
    assert wait_for(lambda: status(admin, "/readyz") == 200), proxy_logs(stack)
    assert status(admin, "/healthz") == 200
    client = stack.client(proxy.port)
    key, value = tag()
    result: list[object] = []
    slow = threading.Thread(
        target=lambda: result.append(
            client.unary(b"slow", metadata=[(key, value), ("x-sleep-ms", "3000")], timeout=20)
        )
    )
    slow.start()
    assert b1.events.wait_call(key, value, timeout=10) is not None
    proxy.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

    # Draining: not ready, but alive, until the process is gone.
    assert wait_for(lambda: status(admin, "/readyz") == 503, timeout=5, step=0.05), proxy_logs(
        stack
    )
    healthz: list[int] = []
    deadline = time.monotonic() + 20
    while proxy.alive and time.monotonic() < deadline:
        healthz.append(status(admin, "/healthz"))
        time.sleep(0.05)
    slow.join(20)
    assert proxy.proc.wait(5) == 0  # type: ignore[union-attr]
    # 200 throughout the drain; then nothing answers (0) as the process exits.
    gone = healthz.index(0) if 0 in healthz else len(healthz)
    assert gone > 0 and healthz[:gone] == [200] * gone and set(healthz[gone:]) <= {0}, healthz
    (r,) = result
    assert r.ok and r.messages == [b"slow"], (r, proxy_logs(stack))  # type: ignore[attr-defined]
