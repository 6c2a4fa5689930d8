"""worker_processes 2: a master, two workers sharing each listen address."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
from harness import (
    ProxyProcess,
    Stack,
    addr,
    free_port,
    location,
    make_config,
    proxy_logs,
    upstream,
)


def workers(proxy: ProxyProcess) -> list[psutil.Process]:
    return [c for c in psutil.Process(proxy.pid).children() if c.is_running()]


def wait_workers(proxy: ProxyProcess, n: int, exclude: set[int], timeout: float = 15) -> list[int]:
    """PIDs of ``n`` live workers none of which is in ``exclude``."""
    deadline = time.monotonic() + timeout
    pids: list[int] = []
    while time.monotonic() < deadline:
        pids = [p.pid for p in workers(proxy) if p.status() != psutil.STATUS_ZOMBIE]
        if len(pids) == n and not set(pids) & exclude:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"workers {pids}, wanted {n} new ones\n{proxy.stderr_tail()}")


def accepted_by(pid: int, port: int) -> int:
    """Established connections a process holds on the listen ``port``."""
    return sum(
        1
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def test_two_workers_share_connections_heal_and_reload_without_loss(stack: Stack) -> None:
    b = stack.backend("b1")
    port = free_port()
    loc = location("/echo.Echo/", "grpc_pass echo")
    config = "shutdown_timeout 5s;\n" + make_config(
        port, [upstream("echo", [addr(b.port)])], [loc], worker_processes=2
    )
    proxy = stack.proxy(config)
    pids = wait_workers(proxy, 2, set())

    # Both workers get connections (the kernel spreads them over the slots).
    clients = [stack.client(proxy.port) for _ in range(16)]
    assert all(c.unary(b"x", timeout=10).ok for c in clients), proxy_logs(stack)
    per_worker = {pid: accepted_by(pid, proxy.port) for pid in pids}
    assert sum(per_worker.values()) == 16 and all(per_worker.values()), per_worker

    # A killed worker is replaced; calls keep working.
    os.kill(pids[0], signal.SIGKILL)
    pids = wait_workers(proxy, 2, {pids[0]})
    assert stack.client(proxy.port).unary(b"x", timeout=10).ok

    # Reload under steady load (old connections and new ones): no call fails.
    stop = threading.Event()
    failures: list[str] = []
    counts = [0] * 4

    def load(i: int) -> None:
        for n in range(100_000):
            if stop.is_set():
                return
            c = clients[i] if n % 2 else stack.client(proxy.port)
            r = c.unary(b"x", timeout=10)
            counts[i] += 1
            if not r.ok:
                failures.append(f"{r.code} {r.details}")

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    mark = len(proxy.stderr())
    os.kill(proxy.pid, signal.SIGHUP)
    wait_workers(proxy, 2, set(pids), timeout=20)
    deadline = time.monotonic() + 10
    while "configuration reloaded" not in proxy.stderr()[mark:] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(15)
    assert "configuration reloaded" in proxy.stderr()[mark:], proxy.stderr_tail()
    assert not failures, (failures[:3], proxy.stderr_tail())
    assert all(counts), counts

    # SIGTERM: the master stops its workers and exits 0.
    alive = [p.pid for p in workers(proxy)]
    proxy.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert proxy.proc.wait(15) == 0  # type: ignore[union-attr]
    assert not [
        pid
        for pid in alive
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
