"""The stream state table (proxy/http2/stream.py) and what the relay reads
of a stream: driven through real connections, with raw frames from the factory."""

from __future__ import annotations

import pytest
from hyperframe import frame as hf

from proxy.http2 import frames as f
from proxy.http2.connection import Connection
from proxy.http2.events import HeadersReceived, StreamReset
from proxy.http2.stream import (
    CLIENT,
    LIVE,
    SERVER,
    Refusal,
    Stream,
    StreamInput,
    StreamState,
)
from tests.unit.frame_factory import FrameFactory, parse_frames

S, In = StreamState, StreamInput
E = f.ErrorCode
RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS = [(b"grpc-status", b"0")]


def server(ff: FrameFactory) -> Connection:
    c = Connection(client=False)
    c.receive_data(ff.preamble())
    c.take_output()
    return c


def client(ff: FrameFactory) -> Connection:
    c = Connection(client=True)
    c.initiate()
    c.receive_data(ff.settings())
    c.take_output()
    return c


def request(c: Connection, ff: FrameFactory, sid: int = 1, end_stream: bool = False) -> Stream:
    (ev,) = c.receive_data(ff.headers(sid, end_stream=end_stream))
    assert isinstance(ev, HeadersReceived)
    return ev.stream  # type: ignore[return-value]


@pytest.mark.parametrize("table", [SERVER, CLIENT], ids=["server", "client"])
def test_every_live_state_answers_every_peer_frame(table: dict) -> None:
    """A peer frame on a live stream always has a next state or a refusal."""
    for state in LIVE:
        for i in (In.RECV_HEADERS, In.RECV_DATA, In.RECV_RST_STREAM):
            assert (state, i) in table, (state, i)
        assert table[state, In.SEND_RST_STREAM] is S.RESET
        assert table[state, In.RECV_RST_STREAM] is S.CLOSED


def test_server_stream_states_follow_the_call() -> None:
    ff = FrameFactory()
    c = server(ff)
    s = request(c, ff)
    assert s.state is S.OPEN_UNANSWERED and not s.local_closed and not s.remote_closed
    c.receive_data(ff.data(1, b"x", end_stream=True))
    assert s.state is S.HALF_CLOSED_REMOTE_UNANSWERED and s.remote_closed
    c.send_headers(s, RESPONSE, False)
    assert s.state is S.HALF_CLOSED_REMOTE
    c.send_headers(s, TRAILERS, True)
    assert s.state is S.CLOSED and s.closed and s.local_closed and s.remote_closed
    assert 1 not in c.streams


def test_client_refuses_data_before_the_response() -> None:
    ff = FrameFactory()
    c = client(ff)
    s = c.open_stream([(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/a")], True)
    assert s.state is S.HALF_CLOSED_LOCAL_UNANSWERED and s.local_closed
    (ev,) = c.receive_data(ff.data(1, b"x"))
    assert isinstance(ev, StreamReset) and ev.code == E.PROTOCOL_ERROR
    assert s.state is S.RESET and s.closed and s.local_closed and not s.remote_closed


def test_reset_keeps_what_was_ended_before_it() -> None:
    """The relay asks ``remote_closed`` of a stream the peer reset: true only
    when the peer's END_STREAM came first."""
    ff = FrameFactory()
    c = client(ff)
    s = c.open_stream([(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/a")], False)
    c.receive_data(ff.headers(1, RESPONSE) + ff.headers(1, TRAILERS, end_stream=True))
    assert s.state is S.HALF_CLOSED_REMOTE and s.remote_closed and not s.local_closed
    (ev,) = c.receive_data(ff.rst_stream(1, E.NO_ERROR))
    assert isinstance(ev, StreamReset) and ev.remote
    assert s.closed and s.remote_closed and not s.local_closed

    t = c.open_stream([(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/a")], False)
    c.receive_data(ff.rst_stream(3, E.CANCEL))
    assert t.closed and not t.remote_closed and not t.local_closed


def test_the_relay_may_close_a_stream_of_a_lost_connection() -> None:
    ff = FrameFactory()
    c = server(ff)
    s = request(c, ff, end_stream=True)
    c.streams.clear()
    s.closed = True
    assert s.state is S.CLOSED and s.remote_closed and not s.local_closed
    with pytest.raises(ValueError):
        s.closed = False
    c.send_headers(s, RESPONSE, True)  # a closed stream takes nothing
    c.reset_stream(s, E.CANCEL)
    assert c.take_output() == b""


def test_late_frames_after_our_reset_are_ignored_after_the_peers_are_errors() -> None:
    ff = FrameFactory()
    c = server(ff)
    ours, theirs = request(c, ff, 1), request(c, ff, 3)
    c.reset_stream(ours, E.CANCEL)
    c.receive_data(ff.rst_stream(3, E.CANCEL))
    c.take_output()
    assert ours.state is S.RESET and theirs.state is S.CLOSED
    assert c.receive_data(ff.data(1, b"late")) == []
    assert c.take_output() == b""  # no RST_STREAM (and its credit is below the threshold)
    c.receive_data(ff.data(3, b"late"))
    (rst,) = [fr for fr in parse_frames(c.take_output()) if isinstance(fr, hf.RstStreamFrame)]
    assert rst.stream_id == 3 and rst.error_code == E.STREAM_CLOSED


def test_headers_after_end_stream_is_the_tables_refusal() -> None:
    assert SERVER[S.HALF_CLOSED_REMOTE, In.RECV_HEADERS] == Refusal(
        E.STREAM_CLOSED, "HEADERS after END_STREAM"
    )
    ff = FrameFactory()
    c = server(ff)
    s = request(c, ff, end_stream=True)
    (ev,) = c.receive_data(ff.headers(1, TRAILERS, end_stream=True))
    assert isinstance(ev, StreamReset) and ev.code == E.STREAM_CLOSED and s.state is S.RESET


def test_a_header_block_we_reset_in_its_first_frame_is_ignored() -> None:
    """HEADERS depending on itself earns RST_STREAM at once, before its
    CONTINUATION: the completed block is then late, on a stream we reset."""
    ff = FrameFactory()
    c = client(ff)
    first = bytearray(ff.headers(11, RESPONSE, end_headers=False, priority_depends_on=11))
    block = bytes(first[9 + 5 :])
    first[0:3] = (5 + 1).to_bytes(3, "big")  # keep one byte of the block for the CONTINUATION
    events = c.receive_data(bytes(first[: 9 + 5 + 1]) + ff.continuation(11, block[1:]))
    assert events == [] and not c.closed
    (rst,) = parse_frames(c.take_output())
    assert isinstance(rst, hf.RstStreamFrame) and rst.stream_id == 11
