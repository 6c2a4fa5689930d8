"""The admin HTTP/1.1 server over in-memory streams: keep-alive, limits, and
the timeout that drops a client who sends nothing (virtual clock)."""

from __future__ import annotations

import trio
import trio.testing

from proxy.admin.handlers import AdminHandlers
from proxy.admin.server import REQUEST_TIMEOUT, AdminServer, reason_phrase
from proxy.balancing.pool import build_pools
from proxy.config import parse_string
from proxy.metrics.sources import Sources
from proxy.relay.relay import Relay


def server(flushed: list[int]) -> AdminServer:
    config = parse_string("server { listen 1; location / { grpc_pass a:1; } }\n", "t")
    sources = Sources(Relay(build_pools(config.upstreams, {}), lambda: 0.0))
    sources.listening = True
    handlers = AdminHandlers(sources, lambda: (b"x_total 1\n", "text/plain; version=0.0.4"))
    return AdminServer(handlers, before_metrics=lambda: flushed.append(1))


async def read_until(stream: trio.abc.Stream, marker: bytes, count: int = 1) -> bytes:
    data = b""
    with trio.fail_after(REQUEST_TIMEOUT + 5):
        while data.count(marker) < count:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
    return data


def test_keep_alive_serves_several_requests_and_flushes_before_metrics() -> None:
    trio.run(_keep_alive)


async def _keep_alive() -> None:
    flushed: list[int] = []
    admin = server(flushed)
    client, srv = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(admin.handle_connection, srv)
        await client.send_all(
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
            b"PUT /readyz HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        )
        data = await read_until(client, b"HTTP/1.1 ", 3)
        await client.aclose()
    replies = data.split(b"HTTP/1.1 ")[1:]
    assert [r[:3] for r in replies] == [b"200", b"200", b"405"]
    # Status lines with the standard reason phrase (h11 sends none by default).
    assert [r.split(b"\r\n", 1)[0] for r in replies] == [
        b"200 OK",
        b"200 OK",
        b"405 Method Not Allowed",
    ]
    assert replies[1].endswith(b"x_total 1\n") and flushed == [1]
    assert b"Allow: GET" in replies[2] or b"allow: GET" in replies[2]
    assert admin.connections == 0


def test_a_silent_client_is_dropped_after_the_request_timeout() -> None:
    trio.run(_silent, clock=trio.testing.MockClock(autojump_threshold=0))


async def _silent() -> None:
    admin = server([])
    client, srv = trio.testing.memory_stream_pair()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(admin.handle_connection, srv)
        await client.send_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")  # head never ends
        assert await read_until(client, b"never") == b""  # closed without a reply
    assert trio.current_time() - start >= REQUEST_TIMEOUT


def test_oversized_body_is_refused() -> None:
    trio.run(_oversized)


async def _oversized() -> None:
    admin = server([])
    client, srv = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(admin.handle_connection, srv)
        await client.send_all(
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 70000
        )
        data = await read_until(client, b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 413")


def test_reason_phrases() -> None:
    assert reason_phrase(200) == b"OK"
    assert reason_phrase(404) == b"Not Found"
    assert reason_phrase(503) == b"Service Unavailable"
    assert reason_phrase(431) == b"Request Header Fields Too Large"
    assert reason_phrase(299) == b""  # not a standard code: none, as before
