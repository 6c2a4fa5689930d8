"""Hostile HTTP/2 clients against the real proxy (issue 8): each attack's
connection is closed with the right GOAWAY code (or its streams ended), the
proxy's RSS stays under a stated bound, the kind is counted in
grpc_proxy_http2_protocol_errors_total, and a well-behaved grpcio client
running calls in parallel meanwhile sees zero failures."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import hpack
import pytest
from admin_client import admin_block, scrape, total
from harness import (
    LOCALHOST,
    EchoClient,
    MiB,
    ProxyProcess,
    RssSampler,
    Stack,
    addr,
    free_ports,
    location,
    make_config,
    upstream,
)
from hyperframe import frame as hf

from proxy.http2 import frames as f

E = f.ErrorCode
# The proxy's RSS may grow by at most this over its idle size during the
# whole module: every attack is cut off early, nothing buffers without bound.
RSS_GROWTH_BOUND = 64 * MiB
SEND_TIMEOUT = 1
HEADER_TIMEOUT = 1


@dataclass
class Setup:
    proxy: ProxyProcess
    client: EchoClient
    admin: int
    baseline_rss: int


@pytest.fixture(scope="module")
def setup(module_stack: Stack) -> Setup:
    backend = module_stack.backend("b1")
    port, admin = free_ports(2)
    config = make_config(
        port,
        [upstream("echo", [addr(backend.port)], "connect_timeout 2s")],
        [location("/echo.Echo/", "grpc_pass echo", f"grpc_send_timeout {SEND_TIMEOUT}s")],
        max_concurrent_streams=128,
        server_directives=[f"client_header_timeout {HEADER_TIMEOUT}s"],
    ) + admin_block(admin)
    proxy = module_stack.proxy(config)
    client = module_stack.client(proxy.port)
    assert client.unary(b"warm-up").ok
    return Setup(proxy, client, admin, proxy.rss())


class GoodTraffic:
    """``n`` threads making unary calls in a loop until stopped (bounded)."""

    def __init__(self, client: EchoClient, n: int = 4, limit: float = 60.0) -> None:
        self.client = client
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._limit = limit
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        deadline = time.monotonic() + self._limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            r = self.client.unary(b"x" * 100, timeout=10)
            with self._lock:
                if r.ok and r.messages == [b"x" * 100]:
                    self.ok += 1
                else:
                    self.failures.append(f"{r.code} {r.details}")

    def __enter__(self) -> GoodTraffic:
        for t in self._threads:
            t.start()
        # Let calls run before the attack begins.
        deadline = time.monotonic() + 10
        while self.ok < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)  # calls keep running just after the attack, too
        self._stop.set()
        for t in self._threads:
            t.join(15)


class Attacker:
    """A raw socket: a thread sends the attack while the test reads what the
    proxy answers, until it closes the connection."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((LOCALHOST, port), timeout=10)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)
        self._sender: threading.Thread | None = None

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the proxy closed the connection mid-attack: expected

    def send_in_background(self, chunks: Iterator[bytes]) -> None:
        def run() -> None:
            for chunk in chunks:
                try:
                    self.sock.sendall(chunk)
                except OSError:
                    return

        self._sender = threading.Thread(target=run, daemon=True)
        self._sender.start()

    def read_until_closed(self, timeout: float = 20.0) -> tuple[bytes, bool]:
        """Everything the proxy sent, and whether it closed within ``timeout``."""
        data = bytearray()
        deadline = time.monotonic() + timeout
        closed = False
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
        return bytes(data), closed

    def close(self) -> None:
        self.sock.close()
        if self._sender is not None:
            self._sender.join(10)


def frames_of(data: bytes) -> list[hf.Frame]:
    out = []
    pos = 0
    while len(data) - pos >= 9:
        fr, length = hf.Frame.parse_frame_header(memoryview(data[pos : pos + 9]))
        if len(data) - pos - 9 < length:
            break
        fr.parse_body(memoryview(data[pos + 9 : pos + 9 + length]))
        out.append(fr)
        pos += 9 + length
    return out


def goaway(data: bytes) -> tuple[int, bytes] | None:
    gs = [fr for fr in frames_of(data) if isinstance(fr, hf.GoAwayFrame)]
    return (gs[-1].error_code, gs[-1].additional_data) if gs else None


def protocol_errors(setup: Setup, kind: str) -> float:
    return total(scrape(setup.admin), "grpc_proxy_http2_protocol_errors_total", kind=kind)


def preamble(settings: dict[int, int] | None = None) -> bytes:
    return f.PREFACE + hf.SettingsFrame(0, settings=settings or {}).serialize()


REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/echo.Echo/Unary"),
    (b":authority", b"localhost"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]


def headers_frame(
    block: bytes,
    sid: int,
    end_headers: bool = True,
    end_stream: bool = False,
) -> bytes:
    flags = (f.END_HEADERS if end_headers else 0) | (f.END_STREAM if end_stream else 0)
    return f.frame_header(len(block), f.HEADERS, flags, sid) + block


def attack(
    setup: Setup,
    payload: Iterator[bytes],
    kind: str | None,
    expect: tuple[int, ...] = (E.ENHANCE_YOUR_CALM,),
    reason: bytes = b"",
) -> bytes:
    """Run one attack with good traffic alongside; check GOAWAY, metrics,
    RSS and the good client. Returns what the proxy sent the attacker."""
    before = protocol_errors(setup, kind) if kind else 0.0
    with RssSampler(setup.proxy.pid) as rss, GoodTraffic(setup.client) as good:
        a = Attacker(setup.proxy.port)
        try:
            a.send_in_background(payload)
            data, closed = a.read_until_closed()
        finally:
            a.close()
    logs = setup.proxy.stderr_tail(20)
    ga = goaway(data)
    assert closed, f"the hostile connection stayed open; got {ga}\n{logs}"
    assert ga is not None and ga[0] in expect, f"GOAWAY {ga}, expected {expect}"
    assert reason.lower() in ga[1].lower(), ga
    assert not good.failures, good.failures[:5]
    assert good.ok > 0
    assert rss.peak - setup.baseline_rss < RSS_GROWTH_BOUND, (rss.peak, setup.baseline_rss)
    if kind:
        assert protocol_errors(setup, kind) >= before + 1
    assert setup.proxy.alive
    return data


# ------------------------------------------------------------------ attacks


def test_rapid_reset_of_20000_streams(setup: Setup) -> None:
    enc = hpack.Encoder()  # after the first block, the request is all indexed

    def chunks() -> Iterator[bytes]:
        yield preamble()
        for start in range(1, 40_001, 200):  # 100 streams per write
            yield b"".join(
                headers_frame(enc.encode(REQUEST), sid) + f.rst_stream(sid, E.CANCEL)
                for sid in range(start, start + 200, 2)
            )

    attack(setup, chunks(), "rapid_reset", reason=b"rapid reset")


def test_continuation_flood_without_end_headers(setup: Setup) -> None:
    block = hpack.Encoder().encode(REQUEST)

    def chunks() -> Iterator[bytes]:
        yield preamble() + headers_frame(block[:5], 1, end_headers=False)
        cont = f.frame_header(1, f.CONTINUATION, 0, 1) + b"\x00"
        for _ in range(100):
            yield cont * 1000

    attack(setup, chunks(), "header_size", reason=b"CONTINUATION")


def test_one_mib_header_block(setup: Setup) -> None:
    value = b"v" * (1 * MiB)
    block = hpack.Encoder().encode([*REQUEST, (b"x-big", value)], huffman=False)

    def chunks() -> Iterator[bytes]:
        yield preamble()
        yield f.headers(1, block, False, 16384)  # HEADERS + CONTINUATIONs

    attack(setup, chunks(), "header_size", reason=b"http2_max_header_size")


def test_ping_flood(setup: Setup) -> None:
    def chunks() -> Iterator[bytes]:
        yield preamble()
        ping = f.ping(b"12345678")
        for _ in range(100):
            yield ping * 1000

    attack(setup, chunks(), "flood", reason=b"PING")


def test_settings_flood(setup: Setup) -> None:
    def chunks() -> Iterator[bytes]:
        yield preamble()
        settings = hf.SettingsFrame(0, settings={f.SETTINGS_INITIAL_WINDOW_SIZE: 65535}).serialize()
        for _ in range(100):
            yield settings * 1000

    attack(setup, chunks(), "flood", reason=b"SETTINGS")


def test_empty_data_flood(setup: Setup) -> None:
    block = hpack.Encoder().encode(REQUEST)

    def chunks() -> Iterator[bytes]:
        yield preamble() + headers_frame(block, 1)
        empty = f.frame_header(0, f.DATA, 0, 1)
        for _ in range(100):
            yield empty * 1000

    attack(setup, chunks(), "flood", reason=b"empty")


def test_window_update_flood(setup: Setup) -> None:
    def chunks() -> Iterator[bytes]:
        yield preamble()
        update = f.window_update(0, 1)
        for _ in range(100):
            yield update * 1000

    attack(setup, chunks(), "flood", reason=b"WINDOW_UPDATE")


def test_a_fast_bidi_ping_pong_is_not_a_flood(setup: Setup) -> None:
    """A real client acknowledges every message it reads with WINDOW_UPDATEs;
    thousands of small messages on one stream must not look like a flood."""
    before = protocol_errors(setup, "flood")
    r = setup.client.bidi([b"p" * 64] * 5000, timeout=60, keep=False)
    assert r.ok, r
    assert protocol_errors(setup, "flood") == before


def test_random_garbage(setup: Setup) -> None:
    rng = random.Random(8)
    garbage = bytes(rng.getrandbits(8) for _ in range(64 << 10))
    attack(setup, iter([garbage]), "bad_frame", expect=(E.PROTOCOL_ERROR,), reason=b"preface")


@pytest.mark.parametrize("seed", range(3))
def test_valid_preface_then_garbage(setup: Setup, seed: int) -> None:
    rng = random.Random(seed)
    garbage = bytes(rng.getrandbits(8) for _ in range(64 << 10))
    # After the client's SETTINGS, garbage parses as frames of random types.
    attack(
        setup,
        iter([preamble(), garbage]),
        "bad_frame",
        expect=(
            E.PROTOCOL_ERROR,
            E.FRAME_SIZE_ERROR,
            E.COMPRESSION_ERROR,
            E.FLOW_CONTROL_ERROR,
            E.ENHANCE_YOUR_CALM,
            E.STREAM_CLOSED,
        ),
    )


def test_zero_window_reader(setup: Setup) -> None:
    """A client that never opens its window: the proxy buffers at most the
    windows, and grpc_send_timeout ends the streams (the connection lives)."""
    enc = hpack.Encoder()
    streams = range(1, 101, 2)
    with RssSampler(setup.proxy.pid) as rss, GoodTraffic(setup.client) as good:
        a = Attacker(setup.proxy.port)
        try:
            req = [(n, b"/echo.Echo/ServerStream" if n == b":path" else v) for n, v in REQUEST] + [
                (b"x-count", b"200"),
                (b"x-size", b"65536"),
            ]
            start = time.monotonic()
            body = b"\x00\x00\x00\x00\x00"
            a.send(
                preamble({f.SETTINGS_INITIAL_WINDOW_SIZE: 0})
                + b"".join(
                    headers_frame(enc.encode(req), sid)
                    + f.frame_header(len(body), f.DATA, f.END_STREAM, sid)
                    + body
                    for sid in streams
                )
            )
            ended: set[int] = set()
            data = bytearray()
            deadline = time.monotonic() + 20
            while len(ended) < len(streams) and time.monotonic() < deadline:
                a.sock.settimeout(0.5)
                try:
                    chunk = a.sock.recv(1 << 20)
                except TimeoutError:
                    continue
                assert chunk, "the proxy closed a connection it had no reason to close"
                data += chunk
                for fr in frames_of(bytes(data)):
                    if isinstance(fr, hf.RstStreamFrame) or (
                        isinstance(fr, hf.HeadersFrame) and "END_STREAM" in fr.flags
                    ):
                        ended.add(fr.stream_id)
            took = time.monotonic() - start
        finally:
            a.close()
    frames = frames_of(bytes(data))
    assert ended == set(streams), frames[:20]
    assert took >= SEND_TIMEOUT * 0.8  # ended by grpc_send_timeout, not refused
    # Each stream got its response headers, then trailers or a reset; no DATA.
    assert {
        fr.stream_id
        for fr in frames
        if isinstance(fr, hf.HeadersFrame) and "END_STREAM" not in fr.flags
    } == set(streams)
    assert not any(
        isinstance(fr, hf.RstStreamFrame) and fr.error_code == E.PROTOCOL_ERROR for fr in frames
    )
    assert not any(isinstance(fr, hf.DataFrame) and fr.data for fr in frames_of(bytes(data)))
    assert not good.failures, good.failures[:5]
    assert rss.peak - setup.baseline_rss < RSS_GROWTH_BOUND


def test_slowloris_silent(setup: Setup) -> None:
    with GoodTraffic(setup.client) as good:
        a = Attacker(setup.proxy.port)
        try:
            start = time.monotonic()
            _, closed = a.read_until_closed(timeout=HEADER_TIMEOUT + 10)
            took = time.monotonic() - start
        finally:
            a.close()
    assert closed and took >= HEADER_TIMEOUT * 0.8
    assert not good.failures


def test_slowloris_trickle(setup: Setup) -> None:
    """The preface a byte at a time, then PINGs and never a request."""

    def chunks() -> Iterator[bytes]:
        for b in preamble():
            time.sleep(0.02)
            yield bytes([b])
        for _ in range(int(HEADER_TIMEOUT * 40)):
            time.sleep(0.1)
            yield f.ping(b"slowlori")

    with GoodTraffic(setup.client) as good:
        a = Attacker(setup.proxy.port)
        try:
            a.send_in_background(chunks())
            data, closed = a.read_until_closed(timeout=HEADER_TIMEOUT + 10)
        finally:
            a.close()
    assert closed
    assert goaway(data) is not None
    assert not good.failures
