"""The relay's HTTP/2 core against RFC 9113, with h2 as the independent peer
and raw frames from the factory where h2 would refuse to misbehave."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe import frame as hf

from proxy.http2 import frames as f
from proxy.http2.connection import Connection
from proxy.http2.events import (
    ConnectionFailed,
    DataReceived,
    GoAwayReceived,
    HeadersReceived,
    Http1Received,
    PingAcked,
    SettingsReceived,
    StreamReset,
    WindowOpened,
)
from proxy.http2.headers import check_request
from proxy.http2.hpack_codec import HeaderBlock, encode_headers
from tests.unit.frame_factory import REQUEST, FrameFactory, parse_frames

E = f.ErrorCode
RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"")]


def server(**kw: int) -> Connection:
    c = Connection(client=False, **kw)
    c.initiate()
    c.take_output()
    return c


def started(conn: Connection, ff: FrameFactory) -> Connection:
    assert [type(e) for e in conn.receive_data(ff.preamble())] == [SettingsReceived]
    conn.take_output()
    return conn


def goaway_code(out: bytes) -> int | None:
    for fr in parse_frames(out):
        if isinstance(fr, hf.GoAwayFrame):
            return fr.error_code
    return None


def rst_codes(out: bytes) -> dict[int, int]:
    return {
        fr.stream_id: fr.error_code for fr in parse_frames(out) if isinstance(fr, hf.RstStreamFrame)
    }


# ------------------------------------------------------------ h2 as the peer


def h2_client() -> h2.connection.H2Connection:
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    return c


def test_h2_client_round_trip_every_frame_understood() -> None:
    peer = h2_client()
    core = Connection(client=False)
    core.initiate()
    peer.receive_data(core.take_output())
    peer.send_headers(1, REQUEST)
    peer.send_data(1, b"\x00\x00\x00\x00\x05hello", end_stream=True)
    events = core.receive_data(peer.data_to_send())
    kinds = [type(e) for e in events]
    assert kinds == [SettingsReceived, HeadersReceived, DataReceived]
    _, req, data = events
    assert req.headers == REQUEST and not req.end_stream
    assert bytes(data.data) == b"\x00\x00\x00\x00\x05hello" and data.end_stream
    s = req.stream
    core.send_headers(s, RESPONSE, False)
    core.send_data(s, b"\x00\x00\x00\x00\x02ok", False)
    core.send_headers(s, TRAILERS, True)
    got = peer.receive_data(core.take_output())
    types = [type(e) for e in got]
    assert h2.events.ResponseReceived in types
    assert h2.events.TrailersReceived in types
    assert h2.events.StreamEnded in types
    body = b"".join(e.data for e in got if isinstance(e, h2.events.DataReceived))
    assert body == b"\x00\x00\x00\x00\x02ok"
    trailers = next(e for e in got if isinstance(e, h2.events.TrailersReceived)).headers
    assert trailers == TRAILERS
    assert s.closed and not core.streams


def test_h2_server_peer_sees_our_requests() -> None:
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    peer.initiate_connection()
    core = Connection(client=True)
    core.initiate()
    s = core.open_stream(REQUEST, end_stream=False)
    core.send_data(s, b"abc", True)
    got = peer.receive_data(core.take_output())
    req = next(e for e in got if isinstance(e, h2.events.RequestReceived))
    assert req.headers == REQUEST and req.stream_id == 1
    assert any(isinstance(e, h2.events.StreamEnded) for e in got)
    core.receive_data(peer.data_to_send())  # server SETTINGS
    peer.send_headers(1, RESPONSE)
    peer.send_data(1, b"xyz")
    peer.send_headers(1, TRAILERS, end_stream=True)
    events = core.receive_data(peer.data_to_send())
    assert [type(e) for e in events] == [HeadersReceived, DataReceived, HeadersReceived]
    assert events[0].headers == RESPONSE and not events[0].trailers
    assert events[2].trailers and events[2].end_stream
    assert s.closed


def test_settings_are_acknowledged_and_applied() -> None:
    ff = FrameFactory()
    core = server()
    core.receive_data(
        f.PREFACE
        + ff.settings({f.SETTINGS_MAX_FRAME_SIZE: 32768, f.SETTINGS_INITIAL_WINDOW_SIZE: 100})
    )
    out = parse_frames(core.take_output())
    assert any(isinstance(x, hf.SettingsFrame) and "ACK" in x.flags for x in out)
    assert core.peer_max_frame_size == 32768 and core.peer_initial_window == 100


@pytest.mark.parametrize(
    "server_frames",
    [
        "settings",  # grpc-js, grpc-go: SETTINGS alone
        "settings+window_update",  # grpcio: SETTINGS and a connection WINDOW_UPDATE
        "settings+settings_ack",  # SETTINGS with the ACK of ours in one read
    ],
)
def test_client_learns_it_may_open_streams_from_settings_alone(server_frames: str) -> None:
    """The first SETTINGS of an upstream is what lets waiting calls start: it
    must surface as an event even when no other frame comes with it."""
    ff = FrameFactory()
    core = Connection(client=True)
    core.initiate()
    core.take_output()
    assert not core.can_open_stream()
    data = ff.settings()
    if "window_update" in server_frames:
        data += ff.window_update(0, 1 << 20)
    if "settings_ack" in server_frames:
        data += ff.settings(ack=True)
    events = core.receive_data(data)
    assert SettingsReceived in [type(e) for e in events]
    assert core.can_open_stream()
    # A SETTINGS ACK alone is no news for the driver.
    assert core.receive_data(ff.settings(ack=True)) == []


def test_later_settings_are_events_too() -> None:
    """MAX_CONCURRENT_STREAMS may rise later: waiters must hear of it."""
    ff = FrameFactory()
    core = Connection(client=True)
    core.initiate()
    core.receive_data(ff.settings({f.SETTINGS_MAX_CONCURRENT_STREAMS: 1}))
    core.open_stream(REQUEST, end_stream=True)
    assert not core.can_open_stream()
    events = core.receive_data(ff.settings({f.SETTINGS_MAX_CONCURRENT_STREAMS: 2}))
    assert [type(e) for e in events] == [SettingsReceived]
    assert core.can_open_stream()


def test_initial_window_change_adjusts_open_streams() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    (req,) = core.receive_data(ff.headers(1))
    assert req.stream.send_window == 65535
    events = core.receive_data(ff.settings({f.SETTINGS_INITIAL_WINDOW_SIZE: 70000}))
    assert req.stream.send_window == 70000
    assert any(isinstance(e, WindowOpened) for e in events)


def test_ping_is_answered_with_same_payload() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    assert core.receive_data(ff.ping(b"abcdefgh")) == []
    (pong,) = parse_frames(core.take_output())
    assert isinstance(pong, hf.PingFrame) and "ACK" in pong.flags
    assert pong.opaque_data == b"abcdefgh"
    (ev,) = core.receive_data(ff.ping(b"zzzzzzzz", ack=True))
    assert isinstance(ev, PingAcked) and ev.opaque == b"zzzzzzzz"


# -------------------------------------------------------------- flow control


def test_data_is_acknowledged_only_when_forwarded() -> None:
    ff = FrameFactory()
    core = started(server(stream_window=4000, connection_window=65535), ff)
    (req,) = core.receive_data(ff.headers(1))
    events = core.receive_data(ff.data(1, b"x" * 1500))
    assert [type(e) for e in events] == [DataReceived]
    assert core.take_output() == b""  # nothing forwarded yet: no credit
    core.ack_data(req.stream, 1500)  # over a quarter of the stream window
    wus = {x.stream_id: x.window_increment for x in parse_frames(core.take_output())}
    assert wus == {1: 1500}


def test_padding_is_credited_at_once() -> None:
    ff = FrameFactory()
    core = started(server(stream_window=400, connection_window=65535), ff)
    core.receive_data(ff.headers(1))
    (ev,) = core.receive_data(ff.data(1, b"ab", padded=150))
    assert bytes(ev.data) == b"ab" and ev.flow_len == 2
    wus = {x.stream_id: x.window_increment for x in parse_frames(core.take_output())}
    assert wus == {1: 151}  # the pad length octet and the padding


def test_stream_window_overflow_is_a_stream_error() -> None:
    ff = FrameFactory()
    core = started(server(stream_window=100), ff)
    core.receive_data(ff.headers(1))
    events = core.receive_data(ff.data(1, b"x" * 101))
    assert [type(e) for e in events] == [StreamReset]
    assert rst_codes(core.take_output()) == {1: E.FLOW_CONTROL_ERROR}
    assert not core.closed


def test_connection_window_overflow_is_a_connection_error() -> None:
    ff = FrameFactory()
    core = started(server(connection_window=65535), ff)
    core.receive_data(ff.headers(1) + ff.headers(3))
    data = b"".join(ff.data(1, b"x" * 16384) for _ in range(3))
    data += ff.data(3, b"x" * 16384) + ff.data(3, b"x" * 16384)
    events = core.receive_data(data)
    assert isinstance(events[-1], ConnectionFailed)
    assert goaway_code(core.take_output()) == E.FLOW_CONTROL_ERROR


def test_window_update_overflow() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(ff.window_update(0, 2**31 - 1))
    assert goaway_code(core.take_output()) == E.FLOW_CONTROL_ERROR
    core2 = started(server(), FrameFactory())
    ff2 = FrameFactory()
    ff2.encoder = FrameFactory().encoder
    core2.receive_data(ff2.headers(1))
    core2.receive_data(ff2.window_update(1, 2**31 - 1))
    assert rst_codes(core2.take_output()) == {1: E.FLOW_CONTROL_ERROR}


def test_zero_window_update_is_protocol_error() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(ff.window_update(0, 0))
    assert goaway_code(core.take_output()) == E.PROTOCOL_ERROR


# ------------------------------------------------------------ stream states


def test_data_on_idle_stream_is_connection_error() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(ff.data(1, b"x"))
    assert goaway_code(core.take_output()) == E.PROTOCOL_ERROR and core.closed


def test_stream_ids_must_increase() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(ff.headers(5, end_stream=True))
    core.receive_data(ff.headers(3, end_stream=True))
    assert goaway_code(core.take_output()) == E.PROTOCOL_ERROR


def test_even_stream_id_from_client_is_protocol_error() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(ff.headers(2))
    assert goaway_code(core.take_output()) == E.PROTOCOL_ERROR


def test_data_after_end_stream_is_stream_closed() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(ff.headers(1, end_stream=True))
    events = core.receive_data(ff.data(1, b"x"))
    assert [type(e) for e in events] == [StreamReset]
    assert rst_codes(core.take_output()) == {1: E.STREAM_CLOSED}


def test_frames_after_our_reset_are_ignored() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    (req,) = core.receive_data(ff.headers(1))
    core.reset_stream(req.stream, E.CANCEL)
    core.take_output()
    assert core.receive_data(ff.data(1, b"late")) == []
    assert not core.closed and goaway_code(core.take_output()) is None


def test_max_concurrent_streams_refuses_extra_streams() -> None:
    ff = FrameFactory()
    core = started(server(max_concurrent_streams=2), ff)
    events = core.receive_data(ff.headers(1) + ff.headers(3) + ff.headers(5))
    assert len(events) == 2
    assert rst_codes(core.take_output()) == {5: E.REFUSED_STREAM}


def test_rst_stream_from_peer() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    (req,) = core.receive_data(ff.headers(1))
    (ev,) = core.receive_data(ff.rst_stream(1, E.CANCEL))
    assert isinstance(ev, StreamReset) and ev.remote and ev.code == E.CANCEL
    assert req.stream.closed


@pytest.mark.parametrize(
    "frame",
    [
        f.frame_header(8, f.PING, 0, 1) + b"12345678",
        f.frame_header(0, f.SETTINGS, 0, 1),
        f.frame_header(4, f.RST_STREAM, 0, 0) + b"\x00" * 4,
        f.frame_header(5, f.PRIORITY, 0, 0) + b"\x00" * 5,
        f.frame_header(8, f.GOAWAY, 0, 1) + b"\x00" * 8,
    ],
    ids=["ping-on-stream", "settings-on-stream", "rst-on-0", "priority-on-0", "goaway-on-stream"],
)
def test_control_frames_on_wrong_stream(frame: bytes) -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(frame)
    assert goaway_code(core.take_output()) == E.PROTOCOL_ERROR


def test_priority_on_itself_is_stream_error() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(ff.headers(1))
    core.receive_data(ff.priority(1, depends_on=1))
    assert rst_codes(core.take_output()) == {1: E.PROTOCOL_ERROR}


def test_priority_is_otherwise_ignored() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    assert core.receive_data(ff.priority(7, depends_on=0)) == []
    (req,) = core.receive_data(ff.headers(1, priority_depends_on=0))
    assert isinstance(req, HeadersReceived)


def test_push_promise_is_refused() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(f.frame_header(4, f.PUSH_PROMISE, f.END_HEADERS, 1) + b"\x00\x00\x00\x02")
    assert goaway_code(core.take_output()) == E.PROTOCOL_ERROR


# ------------------------------------------------------------ frame sizes


def test_frame_larger_than_max_frame_size() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(ff.headers(1))
    core.receive_data(f.frame_header(16385, f.DATA, 0, 1) + b"x" * 16385)
    assert goaway_code(core.take_output()) == E.FRAME_SIZE_ERROR


@pytest.mark.parametrize(
    "frame",
    [
        f.frame_header(7, f.PING, 0, 0) + b"1234567",
        f.frame_header(5, f.SETTINGS, 0, 0) + b"\x00" * 5,
        f.frame_header(3, f.WINDOW_UPDATE, 0, 0) + b"\x00" * 3,
    ],
    ids=["ping", "settings", "window-update"],
)
def test_bad_control_frame_lengths(frame: bytes) -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(frame)
    assert goaway_code(core.take_output()) == E.FRAME_SIZE_ERROR


def test_frames_split_across_reads() -> None:
    ff = FrameFactory()
    core = server()
    data = ff.preamble() + ff.headers(1) + ff.data(1, b"hello", end_stream=True)
    events = []
    for i in range(len(data)):
        events += core.receive_data(data[i : i + 1])
    assert [type(e) for e in events] == [SettingsReceived, HeadersReceived, DataReceived]
    assert bytes(events[2].data) == b"hello"


# ------------------------------------------------------------ header blocks


def test_continuation_assembles_block() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    block = ff.encoder.encode(REQUEST)
    data = ff.headers(1, raw_block=block[:5], end_headers=False)
    data += ff.continuation(1, block[5:10], end_headers=False)
    data += ff.continuation(1, block[10:])
    (req,) = core.receive_data(data)
    assert req.headers == REQUEST


def test_interleaved_frame_in_header_block_is_protocol_error() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    block = ff.encoder.encode(REQUEST)
    core.receive_data(ff.headers(1, raw_block=block[:5], end_headers=False) + ff.ping())
    assert goaway_code(core.take_output()) == E.PROTOCOL_ERROR


def test_continuation_on_other_stream_is_protocol_error() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    block = ff.encoder.encode(REQUEST)
    core.receive_data(
        ff.headers(1, raw_block=block[:5], end_headers=False) + ff.continuation(3, block[5:])
    )
    assert goaway_code(core.take_output()) == E.PROTOCOL_ERROR


def test_endless_continuation_is_capped() -> None:
    ff = FrameFactory()
    core = started(server(max_header_list_size=4096), ff)
    data = ff.headers(1, raw_block=b"\x00", end_headers=False)
    data += b"".join(ff.continuation(1, b"\x00" * 1000, end_headers=False) for _ in range(10))
    events = core.receive_data(data)
    assert isinstance(events[-1], ConnectionFailed)
    assert goaway_code(core.take_output()) == E.ENHANCE_YOUR_CALM


def test_hpack_garbage_is_compression_error() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(ff.headers(1, raw_block=b"\xff\xff\xff\xff\xff"))
    assert goaway_code(core.take_output()) == E.COMPRESSION_ERROR


@pytest.mark.parametrize(
    "headers",
    [
        [h for h in REQUEST if h[0] != b":path"],
        REQUEST + [(b":path", b"/again")],
        [(b"content-type", b"application/grpc")] + REQUEST[:4],
        REQUEST + [(b"X-Upper", b"1")],
        REQUEST + [(b"connection", b"keep-alive")],
        [h for h in REQUEST if h[0] != b"te"] + [(b"te", b"gzip")],
        REQUEST + [(b":status", b"200")],
    ],
    ids=[
        "missing-path",
        "repeated-path",
        "pseudo-after-regular",
        "uppercase",
        "connection",
        "te-gzip",
        "response-pseudo",
    ],
)
def test_malformed_requests_are_stream_errors(headers: list[tuple[bytes, bytes]]) -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    assert core.receive_data(ff.headers(1, headers)) == []
    assert rst_codes(core.take_output()) == {1: E.PROTOCOL_ERROR}
    (req,) = core.receive_data(ff.headers(3))  # the connection carries on
    assert req.stream.id == 3


def test_content_length_mismatch() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(ff.headers(1, REQUEST + [(b"content-length", b"10")]))
    events = core.receive_data(ff.data(1, b"abc", end_stream=True))
    assert [type(e) for e in events] == [StreamReset]
    assert rst_codes(core.take_output()) == {1: E.PROTOCOL_ERROR}


def test_header_decode_cache_follows_table_changes() -> None:
    ff = FrameFactory()
    core = started(server(), ff)
    first = [h for h in core.receive_data(ff.headers(1, end_stream=True))][0].headers
    again = core.receive_data(ff.headers(3, end_stream=True))[0].headers
    assert first == again == REQUEST
    changed = REQUEST[:2] + [(b":path", b"/other.Svc/M")] + REQUEST[3:]
    assert core.receive_data(ff.headers(5, changed, end_stream=True))[0].headers == changed
    assert core.receive_data(ff.headers(7, end_stream=True))[0].headers == REQUEST


# ------------------------------------------------------------ connection level


def test_first_frame_must_be_settings() -> None:
    ff = FrameFactory()
    core = server()
    core.receive_data(f.PREFACE + ff.ping())
    assert goaway_code(core.take_output()) == E.PROTOCOL_ERROR


def test_bad_preface() -> None:
    core = server()
    (ev,) = core.receive_data(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    assert isinstance(ev, ConnectionFailed) and ev.code == E.PROTOCOL_ERROR


def test_http1_request_is_recognised() -> None:
    core = server()
    (ev,) = core.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(ev, Http1Received) and core.closed


def test_goaway_from_server_refuses_unprocessed_streams() -> None:
    core = Connection(client=True)
    core.initiate()
    ff = FrameFactory()
    core.receive_data(ff.settings())
    s1 = core.open_stream(REQUEST, True)
    s3 = core.open_stream(REQUEST, True)
    events = core.receive_data(ff.goaway(last_stream_id=1))
    assert isinstance(events[0], GoAwayReceived)
    assert [(type(e), e.stream) for e in events[1:]] == [(StreamReset, s3)]
    assert events[1].code == E.REFUSED_STREAM
    assert not s1.closed and not core.can_open_stream()


def test_outgoing_headers_split_into_continuation() -> None:
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    peer.initiate_connection()
    core = Connection(client=True)
    core.initiate()
    big = REQUEST + [(b"x-big", b"v" * 40000)]
    core.open_stream(big, end_stream=True)
    out = core.take_output()
    assert any(isinstance(x, hf.ContinuationFrame) for x in parse_frames(out[24:]))
    got = peer.receive_data(out)
    req = next(e for e in got if isinstance(e, h2.events.RequestReceived))
    assert req.headers == big


def test_decoded_header_block_is_immutable_and_shared() -> None:
    """The decode cache hands every call the same HeaderBlock: nothing may
    change it, except the relay's ``info``, set once."""
    ff = FrameFactory()
    core = started(server(), ff)
    core.receive_data(ff.headers(1, end_stream=True))  # fills the dynamic table
    first = core.receive_data(ff.headers(3, end_stream=True))[0].headers
    again = core.receive_data(ff.headers(5, end_stream=True))[0].headers
    assert again is first and isinstance(first, HeaderBlock)
    assert first == REQUEST and [*REQUEST] == first and first != REQUEST[:-1]
    assert first == tuple(REQUEST) and first != [*REQUEST, (b"x", b"y")]
    with pytest.raises(AttributeError):
        first.encoded = b""  # type: ignore[misc]
    with pytest.raises(AttributeError):
        first.append((b"x", b"y"))  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        first[0] = (b"x", b"y")  # type: ignore[index]
    assert first.info is None
    first.info = ("summary",)
    with pytest.raises(AttributeError):
        first.info = ("another",)
    with pytest.raises(AttributeError):
        del first.info
    assert again.info == ("summary",)
    assert first.check(check_request) is None and first.content_length is None
    assert encode_headers(first) is first.encoded is encode_headers(again)
