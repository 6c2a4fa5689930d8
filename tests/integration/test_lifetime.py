"""Long-lived connections through the real proxy: heartbeats, stream idle
timeouts, dead upstreams, connection age, PING floods, reload and drain."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time

import grpc
import h2.config
import h2.connection
import h2.events
import psutil
from harness import (
    LOCALHOST,
    RequestQueue,
    Stack,
    addr,
    free_port,
    location,
    make_config,
    paced,
    proxy_logs,
    run_in_threads,
    upstream,
)

from proxy.http2.frames import ErrorCode

# Client keepalive PINGs on every stream (grpc-core's own knobs).
PINGING_CLIENT = (
    ("grpc.keepalive_time_ms", 300),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 0),
)


def wait_log(proxy: object, text: str, timeout: float = 10.0, after: int = 0) -> bool:
    """Wait until the proxy's stderr (from offset ``after``) contains ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in proxy.stderr()[after:]:  # type: ignore[attr-defined]
            return True
        time.sleep(0.05)
    return False


def test_silent_stream_ends_by_read_timeout_despite_pings_chatty_one_lives(stack: Stack) -> None:
    b = stack.backend("b1")
    port = free_port()
    proxy = stack.proxy(
        make_config(
            port,
            [upstream("echo", [addr(b.port)])],
            [location("/echo.Echo/", "grpc_pass echo", "grpc_read_timeout 2s")],
        )
    )
    client = stack.client(proxy.port, *PINGING_CLIENT)
    silent = RequestQueue(idle_limit=30)
    silent.put(b"hello")

    def run(i: int) -> object:
        if i == 0:
            return client.bidi(silent, timeout=30)
        return client.bidi(paced([b"m%d" % k for k in range(25)], 0.5), timeout=30)

    silent_result, chatty = run_in_threads(run, 2, timeout=40)
    silent.close()
    # Silent for 3x the timeout would be 6 s: PINGs did not keep it alive.
    assert silent_result.code == grpc.StatusCode.UNAVAILABLE, proxy_logs(stack)
    assert "idle" in silent_result.details
    assert silent_result.messages == [b"hello"]
    assert 1.5 < silent_result.elapsed < 6
    # One message every 0.5 s for 12 s: it outlives the 2 s timeout by 10 s.
    assert chatty.ok, chatty.details
    assert chatty.count == 25 and chatty.elapsed > 11.5


def test_frozen_upstream_detected_by_keepalive(stack: Stack) -> None:
    frozen = stack.echo_process("frozen")
    spare = stack.backend("spare")
    port = free_port()
    keepalive_time, keepalive_timeout = 1.0, 1.0
    proxy = stack.proxy(
        make_config(
            port,
            [
                upstream(
                    "echo",
                    [addr(frozen.port), addr(spare.port, "backup")],
                    "keepalive_time 1s",
                    "keepalive_timeout 1s",
                )
            ],
            [location("/echo.Echo/", "grpc_pass echo")],
        )
    )
    client = stack.client(proxy.port)
    assert client.unary(b"x").backend == "frozen"
    queue = RequestQueue(idle_limit=20)
    got_first = threading.Event()
    out: list[object] = []

    def stream() -> None:
        out.append(client.bidi(queue, timeout=20, on_message=lambda i, m: got_first.set()))

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    queue.put(b"one")
    assert got_first.wait(5), proxy_logs(stack)
    assert frozen.pid is not None
    os.kill(frozen.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        t.join(15)
        ended = time.monotonic() - stopped
        assert out, "stream did not end"
        result = out[0]
        assert result.code == grpc.StatusCode.UNAVAILABLE, result  # type: ignore[attr-defined]
        assert "keepalive" in result.details  # type: ignore[attr-defined]
        # keepalive_time + keepalive_timeout + 1 s, plus 1 s for a loaded machine.
        assert ended < keepalive_time + keepalive_timeout + 1 + 1, ended
        for _ in range(4):  # the frozen endpoint is out (passive health): the backup answers
            r = client.unary(b"y", timeout=5)
            assert r.ok and r.backend == "spare", (r.code, r.details)
    finally:
        queue.close()
        os.kill(frozen.pid, signal.SIGCONT)
        frozen.kill()


def _local_ports_to(port: int) -> set[int]:
    me = psutil.Process(os.getpid())
    return {
        c.laddr.port
        for c in me.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


def test_max_connection_age_moves_clients_to_new_connections(stack: Stack) -> None:
    b = stack.backend("b1")
    port = free_port()
    proxy = stack.proxy(
        make_config(
            port,
            [upstream("echo", [addr(b.port)])],
            [location("/echo.Echo/", "grpc_pass echo")],
            server_directives=["max_connection_age 2s", "max_connection_age_grace 5s"],
        )
    )
    client = stack.client(proxy.port)
    seen: set[int] = set()
    failures = []
    calls = 0
    end = time.monotonic() + 10
    while time.monotonic() < end and calls < 10000:
        r = client.unary(b"x", timeout=5)
        calls += 1
        if not r.ok:
            failures.append((r.code, r.details))
        seen |= _local_ports_to(proxy.port)
        time.sleep(0.01)
    assert not failures, failures[:3]
    assert calls > 50
    # 10 s at an age of 2 s (+-10 %): at least four connections.
    assert len(seen) >= 4, (seen, proxy_logs(stack))


def test_ping_flood_gets_enhance_your_calm_others_unaffected(stack: Stack) -> None:
    b = stack.backend("b1")
    port = free_port()
    proxy = stack.proxy(
        make_config(
            port, [upstream("echo", [addr(b.port)])], [location("/echo.Echo/", "grpc_pass echo")]
        )
    )
    client = stack.client(proxy.port)
    stop = threading.Event()
    results: list[bool] = []

    def steady() -> None:
        for _ in range(2000):
            if stop.is_set():
                return
            results.append(client.unary(b"x", timeout=5).ok)

    t = threading.Thread(target=steady, daemon=True)
    t.start()
    sock = socket.create_connection((LOCALHOST, proxy.port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    terminated: list[h2.events.ConnectionTerminated] = []
    try:
        deadline = time.monotonic() + 5
        sent = 0
        while not terminated and time.monotonic() < deadline and sent < 1000:
            conn.ping(b"%08d" % sent)
            sent += 1
            with contextlib.suppress(OSError):
                sock.sendall(conn.data_to_send())
            sock.settimeout(0.05)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            terminated += [
                e for e in conn.receive_data(data) if isinstance(e, h2.events.ConnectionTerminated)
            ]
    finally:
        sock.close()
        time.sleep(0.3)
        stop.set()
        t.join(10)
    assert terminated, "no GOAWAY for a PING flood"
    assert terminated[0].error_code == ErrorCode.ENHANCE_YOUR_CALM
    assert terminated[0].additional_data == b"too_many_pings"
    assert results and all(results), results.count(False)


def test_reload_adds_backend_while_stream_runs_and_broken_file_is_refused(stack: Stack) -> None:
    b1 = stack.backend("b1")
    b2 = stack.backend("b2")
    port = free_port()
    loc = location("/echo.Echo/", "grpc_pass echo")
    proxy = stack.proxy(make_config(port, [upstream("echo", [addr(b1.port)])], [loc]))
    client = stack.client(proxy.port)
    queue = RequestQueue(idle_limit=20)
    replies: list[bytes] = []
    out: list[object] = []
    t = threading.Thread(
        target=lambda: out.append(
            client.bidi(queue, timeout=20, on_message=lambda i, m: replies.append(m))
        ),
        daemon=True,
    )
    t.start()
    queue.put(b"before")
    deadline = time.monotonic() + 5
    while not replies and time.monotonic() < deadline:
        time.sleep(0.02)
    assert replies == [b"before"]

    mark = len(proxy.stderr())
    proxy.config_path.write_text(
        make_config(port, [upstream("echo", [addr(b1.port), addr(b2.port)])], [loc])
    )
    os.kill(proxy.pid, signal.SIGHUP)
    assert wait_log(proxy, "configuration reloaded", after=mark), proxy_logs(stack)
    backends = {client.unary(b"x", timeout=5).backend for _ in range(6)}
    assert backends == {"b1", "b2"}
    queue.put(b"after")
    queue.close()
    t.join(10)
    assert out and out[0].ok, out  # type: ignore[attr-defined]
    assert replies == [b"before", b"after"] and out[0].backend == "b1"  # type: ignore[attr-defined]

    mark = len(proxy.stderr())
    proxy.config_path.write_text("server {\n    listen nope;\n}\n")
    os.kill(proxy.pid, signal.SIGHUP)
    assert wait_log(proxy, "reload failed", after=mark), proxy_logs(stack)
    assert f"{proxy.config_path}:2:" in proxy.stderr()[mark:]
    assert proxy.alive
    backends = {client.unary(b"x", timeout=5).backend for _ in range(6)}
    assert backends == {"b1", "b2"}  # the old configuration stays


def test_reload_adds_and_removes_listeners(stack: Stack) -> None:
    b = stack.backend("b1")
    port, port2 = free_port(), free_port()
    loc = location("/echo.Echo/", "grpc_pass echo")
    proxy = stack.proxy(make_config(port, [upstream("echo", [addr(b.port)])], [loc]))
    old_client = stack.client(port)
    assert old_client.unary(b"x").ok
    mark = len(proxy.stderr())
    text = make_config(port2, [upstream("echo", [addr(b.port)])], [loc])
    proxy.config_path.write_text(text)
    os.kill(proxy.pid, signal.SIGHUP)
    assert wait_log(proxy, "configuration reloaded", after=mark), proxy_logs(stack)
    assert stack.client(port2).unary(b"x").ok
    deadline = time.monotonic() + 5
    refused = False
    while time.monotonic() < deadline and not refused:
        try:
            socket.create_connection((LOCALHOST, port), timeout=1).close()
            time.sleep(0.05)
        except OSError:
            refused = True
    assert refused, "the removed listener still accepts"


def test_sigterm_lets_50_in_flight_calls_finish(stack: Stack) -> None:
    b = stack.backend("b1")
    port = free_port()
    config = make_config(
        port, [upstream("echo", [addr(b.port)])], [location("/echo.Echo/", "grpc_pass echo")]
    )
    proxy = stack.proxy("shutdown_timeout 10s;\n" + config)
    clients = [stack.client(proxy.port) for _ in range(5)]
    started = threading.Event()

    def call(i: int) -> object:
        if i == 50:
            assert b.events.wait_for(lambda calls: len(calls) >= 50, 10)
            started.set()
            return None
        return clients[i % 5].unary(b"x", metadata=[("x-sleep-ms", "2000")], timeout=15)

    holder: list[object] = []
    t = threading.Thread(
        target=lambda: holder.append(run_in_threads(call, 51, timeout=30)), daemon=True
    )
    t.start()
    assert started.wait(15), proxy_logs(stack)
    sent = time.monotonic()
    proxy.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    code = proxy.proc.wait(15)  # type: ignore[union-attr]
    took = time.monotonic() - sent
    t.join(20)
    results = holder[0][:50]  # type: ignore[index]
    failed = [(r.code, r.details) for r in results if not r.ok]  # type: ignore[attr-defined]
    assert not failed, (failed[:3], proxy.stderr_tail())
    assert code == 0, proxy.stderr_tail()
    assert took < 10, took
    assert "graceful shutdown" in proxy.stderr()


def test_client_keepalive_on_the_wire(stack: Stack) -> None:
    """keepalive_time 1s, keepalive_timeout 5s: a client that ACKs is pinged
    about every second (it was every 6 s), and one that stops answering is
    closed about keepalive_time + keepalive_timeout after its last ACK."""
    port = free_port()
    proxy = stack.proxy(
        make_config(port, [], [], server_directives=("keepalive_time 1s", "keepalive_timeout 5s"))
    )
    sock = socket.create_connection((LOCALHOST, proxy.port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    start = time.monotonic()
    answer_for = 4.5
    pings: list[float] = []
    last_ack = 0.0
    closed_at = None
    try:
        sock.settimeout(0.05)
        while time.monotonic() - start < 20:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            now = time.monotonic() - start
            if not data:
                closed_at = now
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.PingReceived):
                    pings.append(now)
                    if now < answer_for:
                        last_ack = now
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    closed_at = now
            if closed_at is not None:
                break
            if pings and pings[-1] >= answer_for:
                conn.clear_outbound_data_buffer()  # h2 queued the ACK: drop it
            else:
                sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    answered_gaps = [g for g, p in zip(gaps, pings[1:], strict=False) if p < answer_for]
    assert len([p for p in pings if p < answer_for]) >= 3, pings
    # Sampled silence: 1 to 1.5 keepalive_time; 0.5 s more for a loaded machine.
    assert answered_gaps and max(answered_gaps) < 2.0, pings
    assert closed_at is not None, pings
    assert 5.0 <= closed_at - last_ack < 1.0 + 5.0 + 1.0, (pings, last_ack, closed_at)
    print(
        f"\nping gaps {[round(g, 3) for g in answered_gaps]}; "
        f"closed {closed_at - last_ack:.2f}s after the last ACK"
    )
