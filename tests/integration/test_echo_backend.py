"""The echo backend (grpc_proxy_demo/echo.py) on its own, with no proxy: the other
integration tests rely on every behaviour checked here."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from harness import (
    LOCALHOST,
    EchoClient,
    MiB,
    RawH2,
    RequestQueue,
    Stack,
    grpc_unframe,
    make_channel,
    port_accepts,
)

from grpc_proxy_demo.echo import (
    UNARY,
    EchoBackend,
    EchoProcess,
    parse_summary,
    pattern,
    summary,
)


@pytest.fixture(scope="module")
def backend(module_stack: Stack) -> EchoBackend:
    return module_stack.backend("direct")


@pytest.fixture(scope="module")
def client(module_stack: Stack, backend: EchoBackend) -> EchoClient:
    return module_stack.client(backend.port)


def tag() -> tuple[str, str]:
    return ("x-test-id", uuid.uuid4().hex)


def test_pattern() -> None:
    assert pattern(0, 0) == b""
    assert pattern(5, 4) == b"\x00\x00\x00\x00"
    m = pattern(300, 1000)
    assert len(m) == 1000 and int.from_bytes(m[:8], "big") == 300
    assert m[8] == 300 % 251 and m[9] == 301 % 251
    assert pattern(1, 64) != pattern(2, 64)
    assert len(pattern(3, 16 * MiB)) == 16 * MiB


def test_summary_round_trip() -> None:
    s = parse_summary(summary([b"ab", b"c"]))
    assert s["count"] == "2" and s["bytes"] == "3" and len(s["sha256"]) == 64


def test_unary_and_metadata(client: EchoClient, backend: EchoBackend) -> None:
    t = tag()
    md = [("x-echo-a", "1"), ("x-echo-b-bin", b"\x00\xff"), ("x-other", "no"), t]
    r = client.unary(b"hello", md)
    assert r.ok and r.messages == [b"hello"]
    want = [("x-backend", "direct"), ("x-echo-a", "1"), ("x-echo-b-bin", b"\x00\xff")]
    assert r.initial == want
    assert r.trailing == want
    rec = backend.events.wait_call(*t, timeout=5, until=lambda c: c.done)
    assert rec is not None and rec.method == "Unary" and rec.completed and not rec.cancelled
    assert rec.get("x-other") == "no" and rec.deadline is not None


def test_unknown_method_is_unimplemented(client: EchoClient) -> None:
    r = client.unary(b"x", path="/echo.Echo/Nope")
    assert r.code == grpc.StatusCode.UNIMPLEMENTED


def test_status_is_trailers_only(backend: EchoBackend) -> None:
    with RawH2(backend.port) as h:
        r = h.response(
            h.grpc_request(
                UNARY, b"x", [("x-status", "5"), ("x-message", "gone 100%"), ("x-echo-k", "v")]
            )
        )
    assert r.ended_with_headers and r.header_blocks == 1 and r.data == b""
    assert r.status == "200" and r.header("grpc-status") == "5"
    assert r.header("grpc-message") == "gone 100%25"
    assert r.header("x-backend") == "direct" and r.header("x-echo-k") == "v"


def test_normal_response_on_the_wire(backend: EchoBackend) -> None:
    with RawH2(backend.port) as h:
        r = h.response(h.grpc_request(UNARY, b"raw"))
    assert r.status == "200" and r.header("x-backend") == "direct"
    assert grpc_unframe(r.data) == [b"raw"]
    assert r.trailer("grpc-status") == "0" and r.trailer("x-backend") == "direct"


@pytest.mark.parametrize("kind", ["unary", "server", "client", "bidi"])
def test_status_on_every_kind(client: EchoClient, kind: str) -> None:
    md = [("x-status", "8"), ("x-message-bin", "plein ✓".encode())]
    r = {
        "unary": lambda: client.unary(b"x", md),
        "server": lambda: client.server_stream(b"x", md),
        "client": lambda: client.client_stream([b"x"], md),
        "bidi": lambda: client.bidi([b"x"], md),
    }[kind]()
    assert r.code == grpc.StatusCode.RESOURCE_EXHAUSTED and r.details == "plein ✓"
    assert ("x-backend", "direct") in r.trailing and r.messages == []


def test_server_stream_modes(client: EchoClient) -> None:
    assert client.server_stream(b"q").messages == [b"q"]
    assert client.server_stream(b"q", [("x-count", "3")]).messages == [b"q"] * 3
    assert client.server_stream(b"q", [("x-size", "10")]).messages == [pattern(0, 10)]
    r = client.server_stream(b"", [("x-count", "100"), ("x-size", "100")])
    assert r.messages == [pattern(i, 100) for i in range(100)]


def test_client_stream_summary(client: EchoClient) -> None:
    msgs = [pattern(i, i) for i in range(20)]
    assert client.client_stream(msgs).messages == [summary(msgs)]


def test_bidi_ping_pong(client: EchoClient) -> None:
    q = RequestQueue(idle_limit=10)
    call = client.bidi_call(q, timeout=20)
    try:
        it = iter(call)
        for i in range(5):
            q.put(b"%d" % i)
            assert next(it) == b"%d" % i
    finally:
        q.close()
    assert list(it) == [] and call.code() == grpc.StatusCode.OK


def test_16mib_both_ways(client: EchoClient) -> None:
    payload = pattern(9, 16 * MiB)
    assert client.unary(payload, timeout=60).messages == [payload]
    r = client.server_stream(b"", [("x-size", str(16 * MiB))], timeout=60)
    assert r.messages == [pattern(0, 16 * MiB)]


def test_response_compression(client: EchoClient) -> None:
    payload = b"z" * MiB
    r = client.unary(
        payload, [("x-response-compression", "gzip")], compression=grpc.Compression.Gzip
    )
    assert r.ok and r.messages == [payload]


def test_sleep_between_messages(client: EchoClient) -> None:
    r = client.server_stream(b"s", [("x-count", "4"), ("x-sleep-ms", "100")])
    assert r.ok and 0.35 < r.elapsed < 3.0


def test_deadline_and_cancel_recorded(client: EchoClient, backend: EchoBackend) -> None:
    t = tag()
    r = client.unary(b"x", [t, ("x-sleep-ms", "5000")], timeout=0.3)
    assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED
    rec = backend.events.wait_call(*t, timeout=2, until=lambda c: c.done)
    assert rec is not None and rec.cancelled and not rec.completed
    assert rec.deadline is not None and 0.1 < rec.deadline <= 0.35  # rounded up

    t = tag()
    r = client.unary(b"x", [t], timeout=None)
    rec = backend.events.wait_call(*t, timeout=2, until=lambda c: c.done)
    assert rec is not None and rec.deadline is None


def test_client_cancel_recorded(client: EchoClient, backend: EchoBackend) -> None:
    t = tag()
    call = client.server_stream_call(
        b"x", metadata=(t, ("x-count", "1000"), ("x-sleep-ms", "20")), timeout=30
    )
    next(iter(call))
    call.cancel()
    rec = backend.events.wait_call(*t, timeout=2, until=lambda c: c.done)
    assert rec is not None and rec.cancelled and rec.messages_out < 1000


def test_authority_recorded(module_stack: Stack, backend: EchoBackend) -> None:
    c = module_stack.client(backend.port, ("grpc.default_authority", "svc.test:1234"))
    t = tag()
    assert c.unary(b"a", [t]).ok
    rec = backend.events.wait_call(*t, timeout=2)
    assert rec is not None and rec.authority == "svc.test:1234"


def test_500_concurrent_streams(client: EchoClient, backend: EchoBackend) -> None:
    release = threading.Event()

    def requests() -> Iterator[bytes]:
        yield b"x"
        release.wait(30)

    backend.reset_peak()
    calls = [client.bidi_call(requests(), timeout=60) for _ in range(500)]
    try:
        deadline = time.monotonic() + 30
        while backend.active < 500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.peak_active >= 500
    finally:
        release.set()
    assert all(list(c) == [b"x"] for c in calls)


def test_port_taken(backend: EchoBackend) -> None:
    with pytest.raises(OSError, match="cannot listen"):
        EchoBackend("dup", backend.port).start()


def test_restart_on_same_port(stack: Stack) -> None:
    b = stack.backend("one")
    port = b.port
    b.stop()
    b2 = stack.backend("two", port)
    with make_channel(port) as ch:
        _, call = ch.unary_unary(UNARY).with_call(b"x", timeout=5)
    assert ("x-backend", "two") in [(m.key, m.value) for m in call.initial_metadata()]
    assert b2.events.count() == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_subprocess_ready_and_clean_exit(stack: Stack, sig: signal.Signals) -> None:
    p = stack.echo_process("sub")  # port 0: the child reports the one it got
    assert p.port > 0 and port_accepts(p.port)
    with make_channel(p.port) as ch:
        _, call = ch.unary_unary(UNARY).with_call(b"x", timeout=5)
    assert ("x-backend", "sub") in [(m.key, m.value) for m in call.initial_metadata()]
    assert p.proc is not None
    p.proc.send_signal(sig)
    assert p.proc.wait(10) == 0
    assert not port_accepts(p.port)


def test_subprocess_kill(stack: Stack) -> None:
    p = stack.echo_process("victim")
    p.kill()
    assert not p.alive and not port_accepts(p.port)


def test_subprocess_port_taken_fails_fast(backend: EchoBackend) -> None:
    p = EchoProcess("dup", backend.port)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="did not become ready"):
        p.start(timeout=10)
    assert time.monotonic() - t0 < 9
    assert not p.alive


def test_module_entry_point_runs(stack: Stack) -> None:
    p = stack.echo_process("entry", 0)
    assert p.address.startswith(LOCALHOST)
    p.stop()
    assert p.proc is not None and p.proc.returncode == 0
