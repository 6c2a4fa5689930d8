"""Micro-benchmark of the relay's hot path, in memory (not a test).

A client core and a backend core (both ``proxy.http2.connection.Connection``)
talk to the proxy's two cores through a ``Relay``, as the I/O layer drives it:
bytes in, events to the relay, ``flush``, bytes out. No sockets, no trio.
Each call is unary: client HEADERS + DATA(END_STREAM) -> upstream, response
HEADERS + DATA + trailers -> client.

Figures per run, best of ``--repeat``:
  total  the whole loop (the four cores and the relay)
  relay  only the time inside the relay's entry points (``on_client_events``,
         ``on_upstream_events``, ``flush``, ``drained``): what a relay change moves
  chunk  the relay time of the best 1,000-call chunk of any run, per call: on a
         shared machine, the figure least disturbed by other programs

    .venv/bin/python benchmarks/micro_relay.py [--calls 20000] [--concurrency 1] [--repeat 5]
    GRPC_PROXY_SRC=/path/to/other/tree .venv/bin/python benchmarks/micro_relay.py

On a busy machine wall time varies by 20% from run to run; instructions do
not. Instructions per call, the same for every run of one tree (the
difference of two sizes cancels start-up):

    for n in 1000 2000; do PYTHONHASHSEED=0 valgrind --tool=callgrind \
        --callgrind-out-file=/dev/null .venv/bin/python benchmarks/micro_relay.py \
        --calls $n --repeat 1 2>&1 | grep Collected; done
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# GRPC_PROXY_SRC=DIR runs another tree's proxy package (an A/B against a baseline).
sys.path.insert(0, os.environ.get("GRPC_PROXY_SRC") or str(Path(__file__).resolve().parent.parent))

from proxy.balancing.endpoint import Endpoint  # noqa: E402
from proxy.balancing.pool import PoolSnapshot  # noqa: E402
from proxy.config.model import Address, Listen, Location, Server  # noqa: E402
from proxy.http2.connection import TRUSTED_LIMITS, Connection  # noqa: E402
from proxy.http2.events import DataReceived, HeadersReceived  # noqa: E402
from proxy.relay.link import Link  # noqa: E402
from proxy.relay.relay import Relay  # noqa: E402

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/echo.Echo/Unary"),
    (b":authority", b"localhost"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]
RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS = [(b"grpc-status", b"0")]
MESSAGE = b"\x00\x00\x00\x00\x05hello"
CHUNK = 1000


class Connector:
    def __init__(self, relay: Relay, up: Link) -> None:
        self.relay = relay
        self.up = up

    def acquire(self, endpoint: object, rs: object, connect_timeout: float) -> None:
        self.relay.attach(rs, self.up)  # type: ignore[arg-type]


class Bench:
    def __init__(self) -> None:
        self.ep = Endpoint(Address("127.0.0.1", 1))
        pool = PoolSnapshot("u", (self.ep,), (), 1.0)
        self.relay = Relay({"u": pool}, time.monotonic)
        loc = Location("/", False, "u")
        srv = Server((Listen(Address("127.0.0.1", 0)),), (loc,))
        self.down = Link(Connection(client=False, max_concurrent_streams=1000), server=srv)
        self.up = Link(Connection(client=True), endpoint=self.ep)
        self.relay.connector = Connector(self.relay, self.up)
        self.client = Connection(client=True, limits=TRUSTED_LIMITS)
        self.backend = Connection(client=False, limits=TRUSTED_LIMITS, max_concurrent_streams=1000)
        self.down.core.initiate()
        self.up.core.initiate()
        self.client.initiate()
        self.in_relay = 0.0
        self.completed = 0
        self.pump()

    def pump(self) -> None:
        relay, down, up = self.relay, self.down, self.up
        clock = time.perf_counter
        while True:
            moved = False
            data = self.client.take_output()
            if data:
                moved = True
                events = down.core.receive_data(data)
                t0 = clock()
                relay.on_client_events(down, events)
                relay.flush()
                self.in_relay += clock() - t0
            data = up.core.take_output()
            if data:
                moved = True
                t0 = clock()
                relay.drained(up)
                self.in_relay += clock() - t0
                self.backend_receive(data)
            data = self.backend.take_output()
            if data:
                moved = True
                events = up.core.receive_data(data)
                t0 = clock()
                relay.on_upstream_events(up, events)
                relay.flush()
                self.in_relay += clock() - t0
            data = down.core.take_output()
            if data:
                moved = True
                t0 = clock()
                relay.drained(down)
                self.in_relay += clock() - t0
                self.client_receive(data)
            if not moved:
                return

    def backend_receive(self, data: bytes) -> None:
        """An echo backend: answers every request once its body has ended."""
        core = self.backend
        for ev in core.receive_data(data):
            if type(ev) is DataReceived:
                core.ack_data(ev.stream, ev.flow_len)
                if ev.end_stream:
                    s = ev.stream
                    core.send_headers(s, RESPONSE, False)
                    core.send_data(s, MESSAGE, False)
                    core.send_headers(s, TRAILERS, True)

    def client_receive(self, data: bytes) -> None:
        core = self.client
        for ev in core.receive_data(data):
            if type(ev) is DataReceived:
                core.ack_data(ev.stream, ev.flow_len)
            elif type(ev) is HeadersReceived and ev.end_stream:
                self.completed += 1

    def run(self, calls: int, concurrency: int) -> list[float]:
        """Returns the relay time of each chunk of ``CHUNK`` calls."""
        client = self.client
        left = calls
        chunks: list[float] = []
        mark, since = 0.0, 0
        while left:
            n = min(concurrency, left)
            for _ in range(n):
                s = client.open_stream(REQUEST, False)
                client.send_data(s, MESSAGE, True)
            left -= n
            self.pump()
            since += n
            if since >= CHUNK:
                chunks.append((self.in_relay - mark) / since)
                mark, since = self.in_relay, 0
        return chunks


def once(calls: int, concurrency: int) -> tuple[float, float, float]:
    b = Bench()
    t0 = time.perf_counter()
    chunks = b.run(calls, concurrency)
    total = time.perf_counter() - t0
    assert b.completed == calls, (b.completed, calls)
    assert not b.relay.active and b.ep.state.active == 0
    return total, b.in_relay, min(chunks, default=b.in_relay / calls)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    runs = [once(args.calls, args.concurrency) for _ in range(args.repeat)]
    total = min(r[0] for r in runs)
    relay = min(r[1] for r in runs)
    chunk = min(r[2] for r in runs)
    import proxy

    print(f"proxy from {Path(proxy.__file__).parent}")
    print(f"{args.calls} unary calls, concurrency {args.concurrency}, best of {args.repeat}:")
    print(f"  total {total * 1e3:8.1f} ms  {total / args.calls * 1e6:6.2f} us/call")
    print(f"  relay {relay * 1e3:8.1f} ms  {relay / args.calls * 1e6:6.2f} us/call")
    print(f"  chunk {chunk * args.calls * 1e3:8.1f} ms  {chunk * 1e6:6.2f} us/call")


if __name__ == "__main__":
    main()
