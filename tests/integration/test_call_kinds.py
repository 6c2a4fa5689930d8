"""The four gRPC call kinds through the proxy, with real grpcio on both sides:
message sizes, 500 concurrent streams on one connection, metadata, compression,
status pass-through (Trailers-Only included) and grpc-timeout forwarding."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from harness import (
    Env,
    MiB,
    RawH2,
    RawResponse,
    RequestQueue,
    Stack,
    grpc_unframe,
    proxy_logs,
    single_backend_env,
    tag,
)

from grpc_proxy_demo.echo import UNARY, CallRecord, pattern, summary


@pytest.fixture(scope="module")
def env(module_stack: Stack) -> Env:
    return single_backend_env(module_stack)


def seen(env: Env, t: tuple[str, str], timeout: float = 5.0) -> CallRecord:
    rec = env.backend.events.wait_call(t[0], t[1], timeout, until=lambda c: c.done)
    assert rec is not None, f"backend did not see/finish call {t}\n{proxy_logs(env.stack)}"
    return rec


# --------------------------------------------------------------------------- kinds


def test_unary(env: Env) -> None:
    t = tag()
    r = env.client.unary(b"hello", [t])
    assert r.ok, (r, proxy_logs(env.stack))
    assert r.messages == [b"hello"]
    assert r.initial_get("x-backend") == ["b1"]
    assert r.trailing_get("x-backend") == ["b1"]
    rec = seen(env, t)
    assert rec.method == "Unary" and rec.messages_in == 1 and rec.bytes_in == 5
    assert rec.completed and not rec.cancelled


def test_server_stream_default_echoes_request_once(env: Env) -> None:
    r = env.client.server_stream(b"once")
    assert r.ok, r
    assert r.messages == [b"once"]


def test_server_stream_many_messages(env: Env) -> None:
    r = env.client.server_stream(b"", [("x-count", "200"), ("x-size", "1000")])
    assert r.ok, r
    assert r.messages == [pattern(i, 1000) for i in range(200)]
    assert r.trailing_get("x-backend") == ["b1"]


def test_client_stream(env: Env) -> None:
    msgs = [pattern(i, 100 + i) for i in range(50)]
    t = tag()
    r = env.client.client_stream(msgs, [t])
    assert r.ok, r
    assert r.messages == [summary(msgs)]
    assert seen(env, t).messages_in == 50


def test_client_stream_no_messages(env: Env) -> None:
    r = env.client.client_stream([])
    assert r.ok, r
    assert r.messages == [summary([])]


def test_bidi(env: Env) -> None:
    msgs = [pattern(i, 10 * i) for i in range(30)]
    r = env.client.bidi(msgs)
    assert r.ok, r
    assert r.messages == msgs
    assert r.initial_get("x-backend") == ["b1"]


def test_bidi_ping_pong_is_streamed_not_buffered(env: Env) -> None:
    """Each echo must arrive before the client sends the next message: the proxy
    forwards messages as they come, not when a side half-closes."""
    requests = RequestQueue(idle_limit=20)
    replies: queue.Queue[bytes] = queue.Queue()
    out: list[object] = []

    def run() -> None:
        out.append(env.client.bidi(requests, timeout=30, on_message=lambda i, m: replies.put(m)))

    th = threading.Thread(target=run, daemon=True)
    th.start()
    try:
        for i in range(10):
            msg = f"ping {i}".encode()
            requests.put(msg)
            try:
                got = replies.get(timeout=5)
            except queue.Empty:
                pytest.fail(f"no echo of message {i} within 5 s while the stream is open")
            assert got == msg
    finally:
        requests.close()
        th.join(30)
    assert out and out[0].ok, out  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- sizes

SIZES = [0, 1 * MiB, 16 * MiB]
SIZE_IDS = ["0B", "1MiB", "16MiB"]


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_unary_sizes(env: Env, size: int) -> None:
    payload = pattern(7, size)
    r = env.client.unary(payload, timeout=60)
    assert r.ok, r.code
    assert len(r.messages[0]) == size
    assert r.messages[0] == payload


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_server_stream_sizes(env: Env, size: int) -> None:
    r = env.client.server_stream(b"", [("x-count", "2"), ("x-size", str(size))], timeout=60)
    assert r.ok, r.code
    assert [len(m) for m in r.messages] == [size, size]
    assert r.messages == [pattern(0, size), pattern(1, size)]


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_client_stream_sizes(env: Env, size: int) -> None:
    msgs = [pattern(0, size), pattern(1, size)]
    r = env.client.client_stream(msgs, timeout=60)
    assert r.ok, r.code
    assert r.messages == [summary(msgs)]


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_bidi_sizes(env: Env, size: int) -> None:
    msgs = [pattern(3, size), pattern(4, size)]
    r = env.client.bidi(msgs, timeout=60)
    assert r.ok, r.code
    assert r.messages == msgs


# --------------------------------------------------------------------------- concurrency


def test_500_concurrent_streams_on_one_connection(env: Env) -> None:
    """500 bidi streams open at once on one channel (one HTTP/2 connection): the
    backend must see all 500 running together, and each must complete."""
    n = 500
    release = threading.Event()
    t = tag()

    def requests(i: int) -> Iterator[bytes]:  # one message, then hold the stream open
        yield f"stream {i}".encode()
        release.wait(60)

    env.backend.reset_peak()
    calls = [env.client.bidi_call(requests(i), metadata=(t,), timeout=90) for i in range(n)]
    try:
        deadline = time.monotonic() + 45
        while env.backend.active < n and time.monotonic() < deadline:
            time.sleep(0.1)
        peak = env.backend.peak_active
        release.set()
        results: list[tuple[list[bytes], grpc.StatusCode]] = []
        for c in calls:
            try:
                msgs = list(c)
            except grpc.RpcError:
                msgs = []
            results.append((msgs, c.code()))
    finally:
        release.set()
        for c in calls:
            c.cancel()
    assert peak >= n, f"only {peak} of {n} streams were open at the backend together"
    bad = [
        (i, r) for i, r in enumerate(results) if r != ([f"stream {i}".encode()], grpc.StatusCode.OK)
    ]
    assert not bad, f"{len(bad)} streams failed, e.g. {bad[:3]}"


# --------------------------------------------------------------------------- metadata


def test_metadata_pass_through_both_ways(env: Env) -> None:
    t = tag()
    md = [
        ("x-echo-text", "hello world"),
        ("x-echo-data-bin", bytes(range(256))),
        ("x-echo-multi", "first"),
        ("x-echo-multi", "second"),
        ("x-custom", "plain"),
        ("x-custom-bin", b"\x00\xff\x00"),
        t,
    ]
    r = env.client.unary(b"m", md)
    assert r.ok, r
    echoed = [(k, v) for k, v in md if k.startswith("x-echo-")]
    for where in (r.initial, r.trailing):
        got = [(k, v) for k, v in where if k.startswith("x-echo-")]
        assert got == echoed
    rec = seen(env, t)
    for k, v in md:
        assert (k, v) in rec.metadata, f"backend did not get {k}"
    assert [v for k, v in rec.metadata if k == "x-echo-multi"] == ["first", "second"]


def test_large_metadata_value(env: Env) -> None:
    """A 4000-byte value each way (gRPC allows 8 KiB of metadata by default)."""
    big = "v" * 4000
    r = env.client.unary(b"m", [("x-echo-big", big)])
    assert r.ok, r
    assert r.initial_get("x-echo-big") == [big]
    assert r.trailing_get("x-echo-big") == [big]


def test_metadata_on_streams(env: Env) -> None:
    md = [("x-echo-s", "s"), ("x-echo-s-bin", b"\x01\x02")]
    r = env.client.bidi([b"a"], md)
    assert r.ok, r
    assert [(k, v) for k, v in r.initial if k.startswith("x-echo-")] == md
    assert [(k, v) for k, v in r.trailing if k.startswith("x-echo-")] == md


def test_authority_pass_through(env: Env) -> None:
    authority = "echo.example.test:8443"
    client = env.stack.client(env.proxy.port, ("grpc.default_authority", authority))
    t = tag()
    r = client.unary(b"a", [t])
    assert r.ok, r
    assert seen(env, t).authority == authority


# --------------------------------------------------------------------------- compression


def test_gzip_request_compression(env: Env) -> None:
    payload = b"compressible " * 80000 + pattern(1, 1000)
    r = env.client.unary(payload, compression=grpc.Compression.Gzip)
    assert r.ok, r
    assert r.messages == [payload]


def test_gzip_response_compression(env: Env) -> None:
    payload = b"zip me " * 100000
    r = env.client.unary(
        payload, [("x-response-compression", "gzip")], compression=grpc.Compression.Gzip
    )
    assert r.ok, r
    assert r.messages == [payload]


def test_gzip_streams(env: Env) -> None:
    msgs = [b"abc" * 10000 + pattern(i, 100) for i in range(5)]
    r = env.client.bidi(
        msgs, [("x-response-compression", "gzip")], compression=grpc.Compression.Gzip
    )
    assert r.ok, r
    assert r.messages == msgs


# --------------------------------------------------------------------------- status

ERROR_CODES = [c for c in grpc.StatusCode if c != grpc.StatusCode.OK]


@pytest.mark.parametrize("code", ERROR_CODES, ids=[c.name for c in ERROR_CODES])
def test_status_and_message_pass_through(env: Env, code: grpc.StatusCode) -> None:
    r = env.client.unary(
        b"x",
        [
            ("x-status", str(code.value[0])),
            ("x-message", f"failed with {code.name}"),
            ("x-echo-why", "because"),
        ],
    )
    assert r.code == code
    assert r.details == f"failed with {code.name}"
    assert ("x-backend", "b1") in r.trailing
    assert ("x-echo-why", "because") in r.trailing


@pytest.mark.parametrize("kind", ["server_stream", "client_stream", "bidi"])
def test_status_on_streams(env: Env, kind: str) -> None:
    md = [("x-status", "7"), ("x-message", "denied")]
    if kind == "server_stream":
        r = env.client.server_stream(b"x", md)
    elif kind == "client_stream":
        r = env.client.client_stream([b"x"], md)
    else:
        r = env.client.bidi([b"x"], md)
    assert r.code == grpc.StatusCode.PERMISSION_DENIED
    assert r.details == "denied"
    assert r.messages == []


def test_non_ascii_status_message(env: Env) -> None:
    text = "héllo wörld ✓ 100% done, ümlaut: ß, 中文, tab\tend"
    r = env.client.unary(b"x", [("x-status", "3"), ("x-message-bin", text.encode())])
    assert r.code == grpc.StatusCode.INVALID_ARGUMENT
    assert r.details == text


def test_trailers_only_response_on_the_wire(env: Env) -> None:
    """An error before any message is a single HEADERS frame with END_STREAM
    (Trailers-Only); grpc-message stays percent-encoded exactly as sent."""
    md = [("x-status", "9"), ("x-message", "no way: 100% sure")]

    def fetch(port: int) -> RawResponse:
        with RawH2(port) as h:
            return h.response(h.grpc_request(UNARY, b"x", md), timeout=10)

    direct = fetch(env.backend.port)
    via = fetch(env.proxy.port)
    assert direct.ended_with_headers and direct.header_blocks == 1  # the backend's form
    assert via.status == "200", via
    assert via.ended_with_headers, via
    assert via.header_blocks == 1 and via.data == b"" and via.trailers == [], via
    assert via.header("grpc-status") == "9"
    assert (via.header("content-type") or "").startswith("application/grpc")
    assert via.header("grpc-message") == direct.header("grpc-message")
    assert via.header("x-backend") == "b1"


def test_normal_response_on_the_wire(env: Env) -> None:
    with RawH2(env.proxy.port) as h:
        r = h.response(h.grpc_request(UNARY, b"raw hello"), timeout=10)
    assert r.status == "200", r
    assert (r.header("content-type") or "").startswith("application/grpc")
    assert grpc_unframe(r.data) == [b"raw hello"]
    assert r.trailer("grpc-status") == "0"
    assert r.ended and r.reset is None


# --------------------------------------------------------------------------- deadlines


def test_grpc_timeout_forwarded(env: Env) -> None:
    t = tag()
    r = env.client.unary(b"d", [t], timeout=5.0)
    assert r.ok, r
    deadline = seen(env, t).deadline
    assert deadline is not None, "backend saw no deadline: grpc-timeout not forwarded"
    assert 3.5 < deadline <= 5.1  # grpc-timeout is sent rounded up


def test_grpc_timeout_forwarded_on_streams(env: Env) -> None:
    t = tag()
    r = env.client.server_stream(b"d", [t, ("x-count", "2")], timeout=8.0)
    assert r.ok, r
    deadline = seen(env, t).deadline
    assert deadline is not None and 6.5 < deadline <= 8.1


def test_no_deadline_when_client_sets_none(env: Env) -> None:
    t = tag()
    r = env.client.unary(b"d", [t], timeout=None)
    assert r.ok, r
    assert seen(env, t).deadline is None
