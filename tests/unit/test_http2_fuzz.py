"""Hypothesis fuzzing of the HTTP/2 core: arbitrary bytes after the preface,
and arbitrary frame sequences (random types, flags, ids and payloads, split
at random points), give only events or one clean connection error (a GOAWAY
queued, ConnectionFailed last): never an exception, never unbounded buffers."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.model import Http2Limits
from proxy.http2 import frames as f
from proxy.http2.connection import Connection
from proxy.http2.events import ConnectionFailed, Event, HeadersReceived
from tests.unit.frame_factory import REQUEST, FrameFactory

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream, payload) of well-formed output; asserts framing."""
    out = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 9, "truncated frame header in output"
        lt, flags, sid = struct.unpack_from(">IBI", data, pos)
        length = lt >> 8
        assert pos + 9 + length <= len(data), "truncated frame in output"
        out.append((lt & 0xFF, flags, sid, data[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return out


def _feed(conn: Connection, chunks: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        was_closed = conn.closed
        got = conn.receive_data(chunk)
        if was_closed:
            assert got == []
        events += got
        for ev in got:
            # A relay driver answers what it gets; keep the core honest under it.
            if isinstance(ev, HeadersReceived) and not ev.trailers and not conn.client:
                conn.send_headers(ev.stream, [(b":status", b"200")], False)  # type: ignore
        _frames(conn.take_output())
        assert len(conn._buf) <= conn.local_max_frame_size + 9
        assert conn._blocks.size <= conn._blocks.max_size + f.DEFAULT_MAX_FRAME_SIZE
    failures = [i for i, ev in enumerate(events) if isinstance(ev, ConnectionFailed)]
    assert len(failures) <= 1
    if failures:
        assert failures[0] == len(events) - 1 and conn.closed and conn.goaway_sent
    return events


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for p in points:
        chunks.append(data[last:p])
        last = p
    chunks.append(data[last:])
    return [c for c in chunks if c]


def _server() -> Connection:
    c = Connection(client=False, limits=Http2Limits(max_header_size=4096))
    c.initiate()
    c.take_output()
    return c


@FUZZ
@given(st.binary(max_size=4096), st.lists(st.integers(0, 4096), max_size=6))
def test_arbitrary_bytes_after_the_preface(garbage: bytes, cuts: list[int]) -> None:
    conn = _server()
    _feed(conn, _split(FrameFactory().preamble() + garbage, cuts))


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_instead_of_the_preface(garbage: bytes) -> None:
    conn = _server()
    _feed(conn, [garbage])


_frame = st.tuples(
    st.integers(0, 12),  # the 10 known types, and unknown ones
    st.integers(0, 255),  # flags
    st.sampled_from([0, 1, 2, 3, 5, 7, 9, 2**31 - 1, 2**31 + 1]),  # also the R bit
    st.one_of(
        st.binary(max_size=64),
        st.builds(lambda n: n.to_bytes(4, "big"), st.integers(0, 2**32 - 1)),
        st.just(FrameFactory().headers(1)[9:]),  # a valid header block
    ),
)


def _raw(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack(">IBI", (len(payload) << 8) | ftype, flags, sid) + payload


@FUZZ
@given(st.lists(_frame, max_size=40), st.lists(st.integers(0, 4096), max_size=6))
def test_arbitrary_frames_to_a_server(
    frames: list[tuple[int, int, int, bytes]], cuts: list[int]
) -> None:
    ff = FrameFactory()
    data = ff.preamble() + ff.headers(1, REQUEST) + b"".join(_raw(*fr) for fr in frames)
    _feed(_server(), _split(data, cuts))


@FUZZ
@given(st.lists(_frame, max_size=40))
def test_arbitrary_frames_to_a_client(frames: list[tuple[int, int, int, bytes]]) -> None:
    conn = Connection(client=True)
    conn.initiate()
    conn.receive_data(FrameFactory().settings())
    conn.open_stream(REQUEST, end_stream=False)
    conn.take_output()
    _feed(conn, [b"".join(_raw(*fr) for fr in frames)])
