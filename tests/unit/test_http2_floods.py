"""Flood limits of the HTTP/2 core (issue 8): each limit trips with GOAWAY
ENHANCE_YOUR_CALM and its kind, and normal traffic at the same volume spread
over time, or under the limit, does not."""

from __future__ import annotations

import pytest

from proxy.config.model import Http2Limits
from proxy.http2 import frames as f
from proxy.http2.connection import Connection
from proxy.http2.events import ConnectionFailed, HeadersReceived
from proxy.http2.floods import RateLimit, ResetWatch
from tests.unit.frame_factory import FrameFactory, parse_frames
from tests.unit.test_http2_connection import goaway_code

E = f.ErrorCode


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def conn(clock: Clock, max_concurrent_streams: int = 128, **limits: int) -> Connection:
    c = Connection(
        client=False,
        max_concurrent_streams=max_concurrent_streams,
        limits=Http2Limits(**limits),
        clock=clock,
    )
    c.receive_data(FrameFactory().preamble())
    c.take_output()
    return c


def failed(events: list[object]) -> ConnectionFailed | None:
    return next((e for e in events if isinstance(e, ConnectionFailed)), None)


def feed(c: Connection, frames: list[bytes], take: bool = True) -> list[object]:
    """One frame per receive batch, output taken each time (a reading peer)."""
    events: list[object] = []
    for fr in frames:
        events += c.receive_data(fr)
        if take and not c.closed:
            c.take_output()
        if c.closed:
            break
    return events


# ----------------------------------------------------------- rate limit units


def test_rate_limit_trips_only_within_a_second() -> None:
    clock = Clock()
    rl = RateLimit(3, clock)
    assert [rl.hit() for _ in range(3)] == [False] * 3
    assert rl.hit()
    clock.now += 1.0
    assert not rl.hit()  # a new window begins
    assert [rl.hit() for _ in range(2)] == [False, False]
    assert rl.hit()


def test_slow_accumulation_never_trips() -> None:
    clock = Clock()
    rl = RateLimit(10, clock)
    for _ in range(1000):
        clock.now += 0.2  # 5 a second, limit 10
        assert not rl.hit()


def test_reset_watch_needs_half_of_the_opened_streams() -> None:
    clock = Clock()
    rw = ResetWatch(10, clock)
    # 10 resets among 100 streams opened: cancellations, not an attack.
    assert not any(rw.hit(199) for _ in range(10))
    # 10 more among the next 10 streams: all of them reset early.
    assert [rw.hit(219) for _ in range(10)][-1]


# ------------------------------------------------------------- control floods

FF = FrameFactory()
UNKNOWN = f.frame_header(3, 0x42, 0, 0) + b"abc"


@pytest.mark.parametrize(
    "frame,limit_field",
    [
        (FF.ping(), "max_control_frames"),
        (FF.settings(), "max_control_frames"),
        (FF.priority(7, depends_on=0), "max_control_frames"),
        (UNKNOWN, "max_control_frames"),
    ],
    ids=["ping", "settings", "priority", "unknown"],
)
def test_control_frame_flood(frame: bytes, limit_field: str) -> None:
    clock = Clock()
    c = conn(clock, **{limit_field: 20})
    before = 19 if frame == FF.settings() else 20  # the preface's SETTINGS counts
    assert failed(feed(c, [frame] * before)) is None
    ev = failed(feed(c, [frame]))
    assert ev is not None and ev.code == E.ENHANCE_YOUR_CALM and ev.kind == "flood"
    assert c.closed and c.close_kind == "flood"
    assert goaway_code(c.take_output()) == E.ENHANCE_YOUR_CALM


@pytest.mark.parametrize("frame", [FF.ping(), FF.settings()], ids=["ping", "settings"])
def test_same_frames_spread_over_time_are_fine(frame: bytes) -> None:
    clock = Clock()
    c = conn(clock, max_control_frames=20)
    for _ in range(200):
        clock.now += 0.1  # 10 a second
        assert failed(feed(c, [frame])) is None
    assert not c.closed


def test_bdp_pings_answering_our_data_are_not_a_flood() -> None:
    """grpc-go's BDP estimator PINGs once per burst of DATA it reads: 101
    PINGs among 1343 DATA frames in 0.23 s were cut off as a PING flood."""
    clock = Clock()
    c = conn(clock)  # default limit: 100 a second
    c.receive_data(FrameFactory().headers(1))
    stream = c.streams[1]
    c.send_headers(stream, [(b":status", b"200")], False)
    for i in range(1000):
        clock.now += 0.0002  # 1000 PINGs in 0.2 s
        c.send_data(stream, b"x" * 100, False)
        c.take_output()
        ev = failed(c.receive_data(FF.ping()))
        assert ev is None, (i, ev)
    assert not c.closed


def test_pings_after_our_headers_are_not_a_flood() -> None:
    c = conn(Clock(), max_control_frames=20)
    ff = FrameFactory()
    for sid in range(1, 200, 2):
        c.receive_data(ff.headers(sid, end_stream=True))
        c.send_headers(c.streams[sid], [(b":status", b"200")], True)
        c.take_output()
        assert failed(feed(c, [FF.ping()] * 2)) is None
    assert not c.closed


def test_ping_flood_between_our_data_frames_is_still_a_flood() -> None:
    """Our DATA restarts the count; it does not lift the limit."""
    c = conn(Clock(), max_control_frames=20)
    c.receive_data(FrameFactory().headers(1))
    stream = c.streams[1]
    c.send_data(stream, b"x", False)
    c.take_output()
    assert failed(feed(c, [FF.ping()] * 20)) is None
    ev = failed(feed(c, [FF.ping()]))
    assert ev is not None and ev.code == E.ENHANCE_YOUR_CALM and ev.kind == "flood"


def test_window_updates_without_data_sent_are_a_flood() -> None:
    """Nothing was sent to acknowledge: 5 + 2 per stream, then GOAWAY."""
    c = conn(Clock())
    c.receive_data(FrameFactory().headers(1))  # one stream: 5 + 2 allowed
    assert failed(feed(c, [FF.window_update(0, 1)] * 7)) is None
    ev = failed(feed(c, [FF.window_update(0, 1)]))
    assert ev is not None and ev.code == E.ENHANCE_YOUR_CALM and ev.kind == "flood"
    assert goaway_code(c.take_output()) == E.ENHANCE_YOUR_CALM


def test_a_fast_ping_pong_reader_is_not_a_flood() -> None:
    """Two WINDOW_UPDATEs (stream and connection) for every DATA frame sent,
    20,000 a second for 2 s: a real grpc C++ bidi client's pattern, which a
    per-second cap of 10,000 cut off."""
    clock = Clock()
    c = conn(clock)
    c.receive_data(FrameFactory().headers(1))
    stream = c.streams[1]
    for i in range(20_000):
        if i % 10 == 0:
            clock.now += 0.001
        c.send_data(stream, b"x" * 10, False)
        c.take_output()
        ev = failed(c.receive_data(FF.window_update(1, 10) + FF.window_update(0, 10)))
        assert ev is None, (i, ev)
    assert not c.closed


def test_window_updates_past_ten_per_data_frame_are_a_flood() -> None:
    c = conn(Clock(), max_window_updates_per_data_frame=10)
    c.receive_data(FrameFactory().headers(1))
    stream = c.streams[1]
    for _ in range(3):
        c.send_data(stream, b"x", False)
    c.take_output()
    allowed = 5 + 2 * (1 + 10 * 3)
    assert failed(feed(c, [FF.window_update(0, 1)] * allowed)) is None
    ev = failed(feed(c, [FF.window_update(0, 1)]))
    assert ev is not None and ev.code == E.ENHANCE_YOUR_CALM


def test_empty_data_flood() -> None:
    clock = Clock()
    c = conn(clock, max_control_frames=20)
    c.receive_data(FrameFactory().headers(1))
    empty = FF.data(1, b"")
    assert failed(feed(c, [empty] * 20)) is None
    ev = failed(feed(c, [empty]))
    assert ev is not None and ev.code == E.ENHANCE_YOUR_CALM and ev.kind == "flood"


def test_padded_empty_data_counts_as_empty() -> None:
    clock = Clock()
    c = conn(clock, max_control_frames=5)
    c.receive_data(FrameFactory().headers(1))
    ev = failed(feed(c, [FF.data(1, b"", padded=10)] * 6))
    assert ev is not None and ev.kind == "flood"


def test_empty_data_with_end_stream_is_not_counted() -> None:
    clock = Clock()
    c = conn(clock, max_control_frames=5)
    ff = FrameFactory()
    frames = []
    for sid in range(1, 41, 2):
        frames += [ff.headers(sid), ff.data(sid, b"", end_stream=True)]
    assert failed(feed(c, frames)) is None


def test_rst_stream_flood_on_closed_streams() -> None:
    clock = Clock()
    c = conn(clock, max_control_frames=20, max_reset_streams=1000)
    feed(c, [FrameFactory().headers(1), FF.rst_stream(1, E.CANCEL)])
    ev = failed(feed(c, [FF.rst_stream(1, E.CANCEL)] * 21))
    assert ev is not None and ev.code == E.ENHANCE_YOUR_CALM and ev.kind == "flood"


def test_queued_control_frames_are_bounded_for_a_peer_that_does_not_read() -> None:
    clock = Clock()
    c = conn(clock, max_control_frames=10_000, max_queued_control_frames=50)
    assert failed(feed(c, [FF.ping()] * 50, take=False)) is None
    ev = failed(feed(c, [FF.ping()], take=False))
    assert ev is not None and ev.code == E.ENHANCE_YOUR_CALM and ev.kind == "flood"
    # The same PINGs from a peer that reads its ACKs are fine.
    c2 = conn(clock, max_control_frames=10_000, max_queued_control_frames=50)
    assert failed(feed(c2, [FF.ping()] * 500)) is None


# --------------------------------------------------------------- rapid reset


def test_rapid_reset_of_20000_streams() -> None:
    clock = Clock()
    c = conn(clock)
    ff = FrameFactory()
    frames = [ff.headers(sid) + ff.rst_stream(sid, E.CANCEL) for sid in range(1, 40_001, 2)]
    events = feed(c, frames)
    ev = failed(events)
    assert ev is not None and ev.code == E.ENHANCE_YOUR_CALM and ev.kind == "rapid_reset"
    opened = sum(isinstance(e, HeadersReceived) for e in events)
    assert opened <= 2 * 250  # tripped early, not after 20,000 calls
    assert goaway_code(c.take_output()) == E.ENHANCE_YOUR_CALM


def test_rapid_reset_in_one_batch_trips_the_new_streams_cap() -> None:
    clock = Clock()
    c = conn(clock, max_concurrent_streams=16, max_reset_streams=10**6)
    ff = FrameFactory()
    batch = b"".join(ff.headers(sid) + ff.rst_stream(sid, E.CANCEL) for sid in range(1, 201, 2))
    ev = failed(c.receive_data(batch))
    assert ev is not None and ev.kind == "rapid_reset"
    assert c.last_peer_stream == 2 * (2 * 16 + 1) - 1  # stream 33: the first over 2x16


def test_refused_streams_in_one_batch_trip_the_cap() -> None:
    clock = Clock()
    c = conn(clock, max_concurrent_streams=8, max_reset_streams=10**6)
    ff = FrameFactory()
    ev = failed(c.receive_data(b"".join(ff.headers(sid) for sid in range(1, 101, 2))))
    assert ev is not None and ev.kind == "rapid_reset"


def test_cancelling_every_open_call_at_once_is_not_an_attack() -> None:
    clock = Clock()
    c = conn(clock)
    ff = FrameFactory()
    for round_ in range(5):  # five times: 128 calls, all cancelled together
        first = 1 + round_ * 256
        sids = range(first, first + 256, 2)
        assert failed(c.receive_data(b"".join(ff.headers(s) for s in sids))) is None
        c.take_output()
        assert failed(c.receive_data(b"".join(ff.rst_stream(s, E.CANCEL) for s in sids))) is None
        clock.now += 1.1  # a client that cancels everything once in a while
    assert not c.closed


def test_high_rate_with_some_cancels_is_not_an_attack() -> None:
    clock = Clock()
    c = conn(clock, max_reset_streams=50)
    ff = FrameFactory()
    for i, sid in enumerate(range(1, 4001, 2)):
        (ev,) = c.receive_data(ff.headers(sid, end_stream=True))
        assert isinstance(ev, HeadersReceived)
        if i % 4 == 0:  # 25% cancelled before the response
            assert failed(c.receive_data(ff.rst_stream(sid, E.CANCEL))) is None
        else:
            c.send_headers(ev.stream, [(b":status", b"200")], True)
        c.take_output()
    assert not c.closed


def test_resets_after_the_response_are_not_counted() -> None:
    clock = Clock()
    c = conn(clock, max_reset_streams=10)
    ff = FrameFactory()
    for sid in range(1, 201, 2):
        (ev,) = c.receive_data(ff.headers(sid))
        c.send_headers(ev.stream, [(b":status", b"200")], False)
        assert failed(c.receive_data(ff.rst_stream(sid, E.CANCEL))) is None
        c.take_output()


def test_malformed_requests_count_as_early_resets() -> None:
    clock = Clock()
    c = conn(clock, max_reset_streams=20)
    ff = FrameFactory()
    bad = [(b":method", b"POST"), (b":path", b"/x")]  # no :scheme
    ev = failed(feed(c, [ff.headers(sid, bad) for sid in range(1, 101, 2)]))
    assert ev is not None and ev.kind == "rapid_reset"


# ---------------------------------------------------------- header block size


def test_continuation_flood_without_end_headers() -> None:
    clock = Clock()
    c = conn(clock)
    ff = FrameFactory()
    frames = [ff.headers(1, end_headers=False)] + [ff.continuation(1, b"", end_headers=False)] * 100
    ev = failed(feed(c, frames))
    assert ev is not None and ev.code == E.ENHANCE_YOUR_CALM and ev.kind == "header_size"
    assert b"CONTINUATION" in c.take_output()
    assert len(c._blocks.parts) <= 1 + 8


def test_one_mib_header_block_is_refused_without_buffering_it() -> None:
    clock = Clock()
    c = conn(clock, max_continuation_frames=10**6)
    ff = FrameFactory()
    chunk = b"\x00" * 16384
    frames = [ff.headers(1, raw_block=chunk, end_headers=False)] + [
        ff.continuation(1, chunk, end_headers=False)
    ] * 63
    ev = failed(feed(c, frames))
    assert ev is not None and ev.kind == "header_size"
    assert c._blocks.size <= 2 * 16384  # refused at the first frame past 16k
    frames_out = parse_frames(c.take_output())
    assert frames_out[-1].error_code == E.ENHANCE_YOUR_CALM
    assert b"http2_max_header_size" in frames_out[-1].additional_data


def test_headers_frame_alone_over_the_limit() -> None:
    c = conn(Clock(), max_header_size=1024)
    ev = failed(c.receive_data(FF.headers(1, raw_block=b"\x00" * 2000)))
    assert ev is not None and ev.kind == "header_size"


def test_decoded_list_over_the_limit() -> None:
    """A small block that expands (one big header indexed, then repeated)."""
    c = conn(Clock(), max_header_size=4096)
    ff = FrameFactory()
    big = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/a"), (b"x-big", b"v" * 1500)]
    assert failed(c.receive_data(ff.headers(1, big))) is None
    ev = failed(c.receive_data(ff.headers(3, big + [(b"x-big", b"v" * 1500)] * 2)))
    assert ev is not None and ev.code == E.ENHANCE_YOUR_CALM and ev.kind == "header_size"


def test_header_size_is_advertised_with_max_frame_size() -> None:
    c = Connection(client=False, limits=Http2Limits(max_header_size=8192))
    c.initiate()
    (settings,) = parse_frames(c.take_output())[:1]
    assert settings.settings[f.SETTINGS_MAX_HEADER_LIST_SIZE] == 8192
    assert settings.settings[f.SETTINGS_MAX_FRAME_SIZE] == 16384
    assert settings.settings[f.SETTINGS_MAX_CONCURRENT_STREAMS] == 128


def test_upstream_connections_are_not_flood_limited() -> None:
    c = Connection(client=True)
    assert c.limits.max_control_frames > 10**9 and c._blocks.max_size == 64 << 10
