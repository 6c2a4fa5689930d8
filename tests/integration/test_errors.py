"""Errors through the proxy: routing misses, dead upstreams, bad requests, lost
upstream connections, idle timeouts, deadlines and cancellation reaching the
backend, and protocol errors that must stay on their own connection."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time

import grpc
import pytest
from harness import (
    LOCALHOST,
    Env,
    RawH2,
    RequestQueue,
    Result,
    Stack,
    addr,
    free_port,
    free_ports,
    grpc_request_headers,
    grpc_unframe,
    location,
    make_config,
    paced,
    proxy_logs,
    single_backend_env,
    tag,
    upstream,
)

from grpc_proxy_demo.echo import UNARY, pattern

READ_TIMEOUT = 1.0
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


@pytest.fixture(scope="module")
def env(module_stack: Stack) -> Env:
    """One backend behind a proxy whose /echo.Echo/ location has a 1 s read timeout."""
    return single_backend_env(module_stack, f"grpc_read_timeout {READ_TIMEOUT:g}s")


# --------------------------------------------------------------------------- routing


def test_no_matching_location_is_unimplemented(stack: Stack) -> None:
    backend = stack.backend("b1")
    proxy = stack.proxy(
        make_config(
            free_port(),
            [upstream("echo", [addr(backend.port)])],
            [location("/echo.Echo/Unary", "grpc_pass echo", exact=True)],
        )
    )
    client = stack.client(proxy.port)
    assert client.unary(b"routed").ok  # the exact location works

    r = client.server_stream(b"x")
    assert r.code == grpc.StatusCode.UNIMPLEMENTED, r
    r = client.unary(b"x", path="/other.Service/Method")
    assert r.code == grpc.StatusCode.UNIMPLEMENTED, r
    r = client.unary(b"x", path="/echo.Echo/UnaryMore")  # '=' is not a prefix
    assert r.code == grpc.StatusCode.UNIMPLEMENTED, r
    assert backend.events.count() == 1, "an unrouted call reached the backend"


def test_all_endpoints_down_is_unavailable_fast(stack: Stack) -> None:
    dead1, dead2 = free_ports(2)  # nothing listens there
    proxy = stack.proxy(
        make_config(
            free_port(),
            [upstream("dead", [addr(dead1), addr(dead2)], "connect_timeout 1s")],
            [location("/", "grpc_pass dead")],
        )
    )
    client = stack.client(proxy.port)
    for call in (
        lambda: client.unary(b"x", timeout=10),
        lambda: client.server_stream(b"x", timeout=10),
        lambda: client.bidi([b"x"], timeout=10),
    ):
        r: Result = call()
        assert r.code == grpc.StatusCode.UNAVAILABLE, r
        assert r.details.strip(), "UNAVAILABLE without a message"
        assert r.elapsed < 2.0, f"took {r.elapsed:.2f}s"


def test_a_refused_connect_says_connection_refused(stack: Stack) -> None:
    """The reason reaches the client, the access log and the log line."""
    dead = free_port()  # nothing listens there
    log_path = stack.workdir / "refused.log"
    proxy = stack.proxy(
        make_config(
            free_port(),
            [upstream("dead", [addr(dead)], "connect_timeout 1s")],
            [location("/", "grpc_pass dead")],
        )
        + f"access_log {log_path} json;\n"
    )
    r = stack.client(proxy.port).unary(b"x", timeout=10)
    assert r.code == grpc.StatusCode.UNAVAILABLE, r
    expected = f"upstream connect error: {LOCALHOST}:{dead}: connection refused"
    assert r.details == expected
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (log_path.exists() and log_path.read_text()):
        time.sleep(0.05)
    assert f'"error":"{expected}"' in log_path.read_text()
    assert f"upstream {LOCALHOST}:{dead}: connection refused" in proxy.stderr()


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/grpcx"])
def test_non_grpc_content_type_is_415(env: Env, content_type: str) -> None:
    before = env.backend.events.count()
    with RawH2(env.proxy.port) as h:
        sid = h.request(
            grpc_request_headers(UNARY, h.authority, content_type=content_type), b"hello"
        )
        r = h.response(sid, timeout=5)
    assert r.status == "415", r
    assert env.backend.events.count() == before


def test_grpc_content_type_variants_are_accepted(env: Env) -> None:
    with RawH2(env.proxy.port) as h:
        sid = h.request(
            grpc_request_headers(UNARY, h.authority, content_type="application/grpc+proto"),
            b"\x00\x00\x00\x00\x02hi",
        )
        r = h.response(sid, timeout=5)
    assert r.status == "200", r
    assert grpc_unframe(r.data) == [b"hi"]
    assert r.trailer("grpc-status") == "0"


def _read_until_eof(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """All bytes until the peer closes (True) or ``timeout`` (False)."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except OSError:  # reset counts as closed
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"POST /echo.Echo/Unary HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\n"
        b"Content-Length: 7\r\n\r\n\x00\x00\x00\x00\x02hi",
    ],
    ids=["GET", "POST-grpc"],
)
def test_http1_request_gets_http1_error_and_close(env: Env, request_bytes: bytes) -> None:
    with socket.create_connection((LOCALHOST, env.proxy.port), timeout=5) as s:
        s.sendall(request_bytes)
        data, closed = _read_until_eof(s, 5.0)
    assert re.match(rb"HTTP/1\.1 (4\d\d|505) ", data), data[:200]
    assert closed, "connection not closed after the HTTP/1.1 error"


# --------------------------------------------------------------------------- upstream loss


def test_upstream_killed_mid_stream_is_unavailable(stack: Stack) -> None:
    victim = stack.echo_process("victim")
    proxy = stack.proxy(
        make_config(
            free_port(),
            [upstream("echo", [addr(victim.port)], "connect_timeout 1s")],
            [location("/", "grpc_pass echo")],
        )
    )
    client = stack.client(proxy.port)
    killed_at: list[float] = []

    def on_message(i: int, msg: bytes) -> None:
        if i == 4:
            victim.kill()
            killed_at.append(time.monotonic())

    r = client.server_stream(
        b"x", [("x-count", "1000"), ("x-sleep-ms", "20")], timeout=20, on_message=on_message
    )
    assert killed_at, f"stream ended before the kill: {r}"
    assert r.code == grpc.StatusCode.UNAVAILABLE, (r, proxy_logs(stack))
    waited = time.monotonic() - killed_at[0]
    assert waited < 3.0, f"client learned of the lost upstream after {waited:.1f}s"
    assert 5 <= r.count < 1000


# --------------------------------------------------------------------------- idle timeout


def test_idle_stream_hits_read_timeout(env: Env) -> None:
    requests = RequestQueue(idle_limit=15)
    try:
        r = env.client.bidi(requests, timeout=10)  # sends nothing, waits
    finally:
        requests.close()
    assert r.code == grpc.StatusCode.UNAVAILABLE, r
    assert "stream idle timeout" in r.details, r.details
    assert READ_TIMEOUT * 0.9 <= r.elapsed < READ_TIMEOUT + 2.0, f"after {r.elapsed:.2f}s"


def test_active_bidi_outlives_read_timeout(env: Env) -> None:
    msgs = [pattern(i, 64) for i in range(11)]  # one every 0.3 s: 3 s > 1 s timeout
    r = env.client.bidi(paced(msgs, 0.3), timeout=20)
    assert r.ok, r
    assert r.messages == msgs
    assert r.elapsed >= 2.9


def test_active_server_stream_outlives_read_timeout(env: Env) -> None:
    """DATA from the backend alone keeps the stream alive (idle = no DATA either way)."""
    r = env.client.server_stream(
        b"", [("x-count", "10"), ("x-size", "64"), ("x-sleep-ms", "300")], timeout=20
    )
    assert r.ok, r
    assert r.messages == [pattern(i, 64) for i in range(10)]


# --------------------------------------------------------------------------- deadline/cancel


def test_client_deadline_reaches_backend(env: Env) -> None:
    t = tag()
    r = env.client.unary(b"x", [t, ("x-sleep-ms", "3000")], timeout=0.5)
    assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED, r
    assert r.elapsed < 1.5
    rec = env.backend.events.wait_call(*t, timeout=2.0, until=lambda c: c.done)
    assert rec is not None, "backend still running the call 2 s after the deadline"
    assert rec.cancelled and not rec.completed


def test_client_cancel_of_server_stream_reaches_backend(env: Env) -> None:
    t = tag()
    call = env.client.server_stream_call(
        b"x", metadata=(t, ("x-count", "1000"), ("x-sleep-ms", "50")), timeout=30
    )
    try:
        it = iter(call)
        next(it)
        next(it)
    finally:
        call.cancel()
    rec = env.backend.events.wait_call(*t, timeout=2.0, until=lambda c: c.done)
    assert rec is not None, "backend did not see the cancel within 2 s"
    assert rec.cancelled and rec.messages_out < 1000


def test_client_cancel_of_bidi_reaches_backend(env: Env) -> None:
    t = tag()
    requests = RequestQueue(idle_limit=15)
    call = env.client.bidi_call(requests, metadata=(t,), timeout=30)
    try:
        requests.put(b"one")
        assert next(iter(call)) == b"one"
    finally:
        call.cancel()
        requests.close()
    rec = env.backend.events.wait_call(*t, timeout=2.0, until=lambda c: c.done)
    assert rec is not None, "backend did not see the cancel within 2 s"
    assert rec.cancelled


# --------------------------------------------------------------------------- isolation

GARBAGE = {
    "bytes": PREFACE + b"\xff" * 64,  # frame header: 16 MiB length, unknown type
    "data-on-stream-0": PREFACE + EMPTY_SETTINGS + b"\x00\x00\x04\x00\x00\x00\x00\x00\x00abcd",
    "bad-hpack": PREFACE + EMPTY_SETTINGS + b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x80",
}


def _send_garbage(port: int, garbage: bytes, timeout: float = 5.0) -> bool:
    """Send ``garbage`` on a new connection; True if the proxy then closed it."""
    with socket.create_connection((LOCALHOST, port), timeout=5) as s:
        with contextlib.suppress(OSError):
            s.sendall(garbage)
        _, closed = _read_until_eof(s, timeout)
    return closed


@pytest.mark.parametrize("name", list(GARBAGE))
def test_protocol_error_closes_that_connection(env: Env, name: str) -> None:
    assert _send_garbage(env.proxy.port, GARBAGE[name]), (
        f"{name}: connection still open 5 s after a connection error (RFC 9113 5.4.1)"
    )
    assert env.proxy.alive


def test_protocol_error_does_not_disturb_other_clients(env: Env) -> None:
    stop = threading.Event()
    results: list[Result] = []

    def traffic() -> None:
        deadline = time.monotonic() + 30
        i = 0
        while not stop.is_set() and time.monotonic() < deadline:
            results.append(env.client.unary(f"call {i}".encode(), timeout=5))
            i += 1
            time.sleep(0.01)

    # a stream that runs across all the bad connections
    stream_out: list[Result] = []
    streamer = threading.Thread(
        target=lambda: stream_out.append(
            env.client.server_stream(
                b"", [("x-count", "20"), ("x-size", "100"), ("x-sleep-ms", "100")], timeout=20
            )
        ),
        daemon=True,
    )
    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    streamer.start()
    try:
        time.sleep(0.3)
        for garbage in GARBAGE.values():
            _send_garbage(env.proxy.port, garbage, timeout=0.5)
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join(30)
        streamer.join(30)
    assert len(results) >= 10
    bad = [r for r in results if not r.ok]
    assert not bad, f"{len(bad)} of {len(results)} calls failed, e.g. {bad[0]}"
    assert stream_out and stream_out[0].ok and stream_out[0].count == 20, stream_out
    assert env.client.unary(b"after").ok
    assert env.proxy.alive


def test_proxy_survives_raw_client_that_vanishes(env: Env) -> None:
    """A raw client opens streams and disappears mid-request; the proxy keeps serving."""
    h = RawH2(env.proxy.port)
    h.request(
        grpc_request_headers(UNARY, h.authority), b"\x00\x00\x00\x00\x10partial", end_stream=False
    )
    h.close()
    assert env.client.unary(b"still here").ok
    assert env.proxy.alive
