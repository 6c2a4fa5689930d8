"""Connection timers and the PING policy, without a clock or a socket: scripts
of "at this time the driver saw this, so the timers say that"."""

from __future__ import annotations

import pytest
from hyperframe import frame as hf

from proxy.http2 import frames as f
from proxy.http2.connection import Connection
from proxy.http2.events import ConnectionFailed, PingAcked
from proxy.http2.keepalive import (
    DRAIN_OPAQUE,
    NOTICE_WAIT,
    Action,
    ConnectionTimers,
    PingPolicy,
    TimerSettings,
)
from tests.unit.frame_factory import FrameFactory, parse_frames

A = Action


def timers(now: float = 0.0, **kw: object) -> ConnectionTimers:
    return ConnectionTimers(TimerSettings(**kw), now, jitter=lambda: 0.5)  # type: ignore[arg-type]


# ------------------------------------------------------------------ keepalive


def test_ping_after_silence_and_dead_without_ack() -> None:
    t = timers(keepalive_time=10, keepalive_timeout=2)
    assert t.poll(5, rx=1, started=1, open_streams=1) == []
    assert t.poll(14, rx=1, started=1, open_streams=1) == []  # silent 9 s
    assert t.poll(15, rx=1, started=1, open_streams=1) == [A.PING]
    assert t.next_wake == 17
    assert t.poll(17, rx=1, started=1, open_streams=1) == [A.DEAD]
    assert t.closed and t.reason == "keepalive timeout"
    assert t.poll(30, rx=9, started=1, open_streams=1) == []


def test_any_frame_after_the_ping_keeps_the_connection() -> None:
    t = timers(keepalive_time=10, keepalive_timeout=2)
    assert t.poll(10, rx=0, started=1, open_streams=1) == [A.PING]
    assert t.poll(11, rx=1, started=1, open_streams=1) == []  # the ACK (or data)
    assert t.poll(12, rx=1, started=1, open_streams=1) == []
    assert not t.closed
    # silence again: the next PING comes keepalive_time after the ACK was seen
    assert t.poll(20, rx=1, started=1, open_streams=1) == []
    assert t.poll(21, rx=1, started=1, open_streams=1) == [A.PING]


def test_traffic_means_no_ping() -> None:
    t = timers(keepalive_time=10, keepalive_timeout=2)
    for i in range(1, 20):
        assert t.poll(i * 5, rx=i, started=1, open_streams=1) == []


def test_next_wake_bounds_silence_detection() -> None:
    """Activity is sampled: a PING goes out within 1.5 keepalive_time."""
    t = timers(keepalive_time=10, keepalive_timeout=2)
    now, pinged = 0.0, None
    for _ in range(20):
        rx = min(int(now), 3)  # a frame each second until t=3, then silence
        if A.PING in t.poll(now, rx=rx, started=1, open_streams=1):
            pinged = now
            break
        now = t.next_wake
    assert pinged is not None and 13 <= pinged <= 3 + 15


def test_upstream_does_not_ping_idle_connections() -> None:
    t = timers(keepalive_time=1, keepalive_timeout=1, ping_idle=False)
    assert t.poll(5, rx=0, started=0, open_streams=0) == []
    assert t.poll(6, rx=0, started=1, open_streams=1) == [A.PING]


# ------------------------------------------------------------------ idle, header


def test_idle_timeout_starts_a_graceful_close() -> None:
    t = timers(idle_timeout=60)
    assert t.poll(30, rx=1, started=1, open_streams=1) == []
    assert t.poll(40, rx=2, started=1, open_streams=0) == []  # idle from here
    assert t.next_wake == 100
    assert t.poll(99, rx=2, started=1, open_streams=0) == []
    assert t.poll(100, rx=2, started=1, open_streams=0) == [A.NOTICE]
    assert t.reason == "idle_timeout"


def test_short_calls_between_polls_keep_a_connection_busy() -> None:
    t = timers(idle_timeout=60)
    assert t.poll(10, rx=1, started=1, open_streams=0) == []
    assert t.poll(65, rx=5, started=7, open_streams=0) == []  # calls came and went
    assert t.poll(124, rx=5, started=7, open_streams=0) == []
    assert t.poll(125, rx=5, started=7, open_streams=0) == [A.NOTICE]


def test_client_header_timeout() -> None:
    t = timers(header_timeout=10)
    assert t.next_wake == 10
    assert t.poll(10, rx=1, started=0, open_streams=0) == [A.CLOSE]
    assert t.reason == "client_header_timeout"
    ok = timers(header_timeout=10)
    assert ok.poll(3, rx=1, started=1, open_streams=1) == []
    assert ok.poll(20, rx=1, started=1, open_streams=1) == []


# ------------------------------------------------------------------ graceful close


def test_two_phase_goaway_waits_for_the_ping_ack_then_the_streams() -> None:
    t = timers()
    t.drain(0, None, "shutdown")
    assert t.poll(0, rx=0, started=3, open_streams=2) == [A.NOTICE]
    assert t.poll(0.1, rx=0, started=3, open_streams=2) == []  # no ACK yet
    assert t.poll(0.2, rx=1, started=5, open_streams=3, last_ack=DRAIN_OPAQUE) == [A.GOAWAY]
    assert t.poll(0.3, rx=1, started=5, open_streams=1) == []
    assert t.poll(0.4, rx=1, started=5, open_streams=0) == [A.CLOSE]
    assert t.closed and t.next_wake == float("inf")


def test_goaway_without_ack_after_notice_wait() -> None:
    t = timers()
    t.drain(0, None, "shutdown")
    assert t.poll(0, rx=0, started=1, open_streams=0) == [A.NOTICE]
    assert t.poll(NOTICE_WAIT, rx=0, started=1, open_streams=0) == [A.GOAWAY, A.CLOSE]


def test_grace_ends_streams_with_unavailable() -> None:
    t = timers()
    t.drain(0, 5, "shutdown")
    t.drain(1, 9, "later")  # a later deadline does not extend the grace
    assert t.poll(0, rx=0, started=1, open_streams=1) == [A.NOTICE]
    assert t.poll(1, rx=1, started=1, open_streams=1, last_ack=DRAIN_OPAQUE) == [A.GOAWAY]
    assert t.poll(4.9, rx=1, started=1, open_streams=1) == []
    assert t.poll(5, rx=1, started=1, open_streams=1) == [A.END_STREAMS, A.CLOSE]
    assert t.reason == "shutdown"


def test_max_connection_age_with_jitter_and_grace() -> None:
    t = ConnectionTimers(TimerSettings(max_age=100, max_age_grace=10), 0, jitter=lambda: 1.0)
    assert t.next_wake == pytest.approx(110)  # +10 %
    assert t.poll(109, rx=1, started=1, open_streams=1) == []
    assert t.poll(110.01, rx=1, started=1, open_streams=1) == [A.NOTICE]
    assert t.poll(110.5, rx=2, started=1, open_streams=1, last_ack=DRAIN_OPAQUE) == [A.GOAWAY]
    assert t.poll(120.02, rx=2, started=1, open_streams=1) == [A.END_STREAMS, A.CLOSE]
    early = ConnectionTimers(TimerSettings(max_age=100), 0, jitter=lambda: 0.0)
    assert early.next_wake == pytest.approx(90)


# ------------------------------------------------------------------ PING policy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_policy_strikes() -> None:
    clock = Clock()
    p = PingPolicy(5, clock)
    assert [p.on_ping(False) for _ in range(3)] == [False, False, False]  # 2 strikes
    assert p.on_ping(False)  # the third strike
    p.reset()
    assert not p.on_ping(False)


def test_policy_allows_pings_while_streams_are_open_and_slow_pings() -> None:
    clock = Clock()
    p = PingPolicy(5, clock)
    for _ in range(10):
        assert not p.on_ping(True)
    for _ in range(10):
        clock.now += 5
        assert not p.on_ping(False)


def _server_with_policy(clock: Clock) -> tuple[Connection, FrameFactory]:
    ff = FrameFactory()
    c = Connection(client=False)
    c.ping_policy = PingPolicy(5, clock)
    assert [type(e).__name__ for e in c.receive_data(ff.preamble())] == ["SettingsReceived"]
    c.take_output()
    return c, ff


def test_ping_flood_gets_goaway_enhance_your_calm() -> None:
    c, ff = _server_with_policy(Clock())
    events = c.receive_data(ff.ping(b"aaaaaaaa") * 3)
    acks = [fr for fr in parse_frames(c.take_output()) if isinstance(fr, hf.PingFrame)]
    assert len(acks) == 3 and all("ACK" in fr.flags for fr in acks)  # answered
    assert events == []
    events = c.receive_data(ff.ping(b"aaaaaaaa"))
    assert [type(e) for e in events] == [ConnectionFailed]
    goaway = [fr for fr in parse_frames(c.take_output()) if isinstance(fr, hf.GoAwayFrame)]
    assert goaway[0].error_code == f.ErrorCode.ENHANCE_YOUR_CALM
    assert goaway[0].additional_data == b"too_many_pings"
    assert c.closed


def test_new_stream_clears_strikes() -> None:
    c, ff = _server_with_policy(Clock())
    c.receive_data(ff.ping() * 3)
    c.receive_data(ff.headers(1, end_stream=True))
    assert c.ping_policy is not None and c.ping_policy.strikes == 0
    assert not c.closed


def test_announce_goaway_keeps_accepting_streams_and_records_acks() -> None:
    c, ff = _server_with_policy(Clock())
    c.announce_goaway()
    goaway = [fr for fr in parse_frames(c.take_output()) if isinstance(fr, hf.GoAwayFrame)]
    assert goaway[0].last_stream_id == f.MAX_STREAM_ID
    assert not c.goaway_sent
    events = c.receive_data(ff.headers(1, end_stream=True) + ff.ping(DRAIN_OPAQUE, ack=True))
    assert len(c.streams) == 1 and isinstance(events[-1], PingAcked)
    assert c.last_ping_ack == DRAIN_OPAQUE
    c.send_goaway()
    goaway = [fr for fr in parse_frames(c.take_output()) if isinstance(fr, hf.GoAwayFrame)]
    assert goaway[0].last_stream_id == 1
