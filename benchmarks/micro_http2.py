"""Micro-benchmark of the sans-IO HTTP/2 core (proxy/http2), no sockets.

A client ``Connection`` and a server ``Connection`` talk back to back: 20,000
unary calls' worth of frames (request HEADERS + DATA, response HEADERS + DATA +
trailers), ``--batch`` calls per round trip, as a loaded proxy sees them. Both
sides credit the DATA they get (``ack_data``); as gRPC peers return connection
credit far sooner than our quarter-window rule, each side also gets one
connection WINDOW_UPDATE per call. Prints the best of
``--repeat`` runs (default 5) in seconds and microseconds per call, timed by
``time.perf_counter`` (and the process's CPU time, steadier on a busy machine).

    .venv/bin/python benchmarks/micro_http2.py [--calls N] [--batch B] [--repeat R]

Not a test: run it before and after a change to the core and compare.
"""

from __future__ import annotations

import argparse
import time

from proxy.http2 import frames as f
from proxy.http2.connection import Connection
from proxy.http2.events import DataReceived, HeadersReceived

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/echo.Echo/Unary"),
    (b":authority", b"127.0.0.1:8080"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
    (b"user-agent", b"grpc-python/1.60.0 grpc-c/37.0.0 (linux; chttp2)"),
    (b"grpc-accept-encoding", b"identity,deflate,gzip"),
    (b"grpc-timeout", b"9999m"),
]
RESPONSE = [
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
    (b"grpc-accept-encoding", b"identity,deflate,gzip"),
]
TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"")]
MESSAGE = b"\x00\x00\x00\x00\x64" + b"m" * 100
CREDIT = f.window_update(0, len(MESSAGE))  # a peer's credit for one message


def pair() -> tuple[Connection, Connection]:
    client = Connection(client=True)
    server = Connection(client=False)
    client.initiate()
    server.receive_data(client.take_output())
    client.receive_data(server.take_output())
    server.receive_data(client.take_output())  # the client's SETTINGS ACK
    assert client.can_open_stream()
    return client, server


def run(calls: int, batch: int) -> tuple[float, float]:
    """(wall seconds by perf_counter, CPU seconds by process_time)."""
    client, server = pair()
    c0 = time.process_time()
    t0 = time.perf_counter()
    done = 0
    while done < calls:
        n = min(batch, calls - done)
        for _ in range(n):
            s = client.open_stream(REQUEST, False)
            client.send_data(s, MESSAGE, True)
        for ev in server.receive_data(client.take_output() + CREDIT * n):
            t = type(ev)
            if t is HeadersReceived:
                st = ev.stream  # type: ignore[attr-defined]
                server.send_headers(st, RESPONSE, False)
                server.send_data(st, MESSAGE, False)
                server.send_headers(st, TRAILERS, True)
            elif t is DataReceived:
                server.ack_data(ev.stream, ev.flow_len)  # type: ignore[attr-defined]
        for ev in client.receive_data(server.take_output() + CREDIT * n):
            if type(ev) is DataReceived:
                client.ack_data(ev.stream, ev.flow_len)  # type: ignore[attr-defined]
        done += n
    # The last WINDOW_UPDATEs too.
    server.receive_data(client.take_output())
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    assert not client.streams and not server.streams and not client.closed
    assert not server.closed
    return elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    runs = [run(args.calls, args.batch) for _ in range(args.repeat)]
    times = [wall for wall, _ in runs]
    best = min(times)
    cpu = min(c for _, c in runs)
    print(
        f"{args.calls} unary calls, {args.batch} per round trip: best of {args.repeat} "
        f"{best:.4f} s ({best / args.calls * 1e6:.2f} us/call; CPU {cpu:.4f} s); "
        f"all: {' '.join(f'{t:.4f}' for t in times)}"
    )


if __name__ == "__main__":
    main()
