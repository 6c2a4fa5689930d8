"""LinkWatch driving a real LinkIO over in-memory streams, on trio's
MockClock: minutes of keepalive and header timers in milliseconds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio.testing
from hyperframe import frame as hf

from proxy.http2.connection import Connection
from proxy.http2.frames import PREFACE
from proxy.http2.keepalive import KEEPALIVE_OPAQUE, TimerSettings
from proxy.relay.link import Link
from proxy.relay.relay import Relay
from proxy.runtime.io import LinkIO
from proxy.runtime.lifetime import LinkWatch
from tests.unit.frame_factory import REQUEST, FrameFactory, parse_frames


async def _serve(
    settings: TimerSettings, peer_script: Callable[[trio.abc.Stream], Awaitable[None]]
) -> tuple[list[hf.Frame], str, float]:
    ours, theirs = trio.testing.memory_stream_pair()
    relay = Relay({}, trio.current_time)
    link = Link(Connection(client=False), peer="test")
    io = LinkIO(link, ours, relay, relay.on_client_events)
    watch = LinkWatch(link, io, relay, settings)
    received = bytearray()
    start = trio.current_time()

    async def read_all() -> None:
        while True:
            try:
                data = await theirs.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            received.extend(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_all)
        nursery.start_soon(peer_script, theirs)
        async with trio.open_nursery() as conn:
            conn.start_soon(watch.run)
            await io.run()
            conn.cancel_scope.cancel()
        ended = trio.current_time() - start
        nursery.cancel_scope.cancel()
    return parse_frames(bytes(received)), io.close_reason, ended


def test_client_header_timeout_closes_a_silent_connection() -> None:
    async def silent_after_preface(s: trio.abc.Stream) -> None:
        await s.send_all(FrameFactory().preamble())
        await trio.sleep_forever()

    async def main() -> tuple[list[hf.Frame], str, float]:
        return await _serve(TimerSettings(header_timeout=10), silent_after_preface)

    frames, reason, ended = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert reason == "client_header_timeout" and 10 <= ended < 11
    assert any(isinstance(f, hf.GoAwayFrame) for f in frames)


def test_keepalive_closes_a_client_that_never_acks() -> None:
    async def never_acks(s: trio.abc.Stream) -> None:
        await s.send_all(FrameFactory().preamble())
        await trio.sleep_forever()

    async def main() -> tuple[list[hf.Frame], str, float]:
        return await _serve(TimerSettings(keepalive_time=60, keepalive_timeout=20), never_acks)

    frames, reason, ended = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    pings = [f for f in frames if isinstance(f, hf.PingFrame) and "ACK" not in f.flags]
    assert pings and pings[0].opaque_data == KEEPALIVE_OPAQUE
    assert reason == "keepalive timeout" and 80 <= ended <= 60 * 1.5 + 20 + 1


def test_keepalive_keeps_a_client_that_acks() -> None:
    async def acks(s: trio.abc.Stream) -> None:
        ff = FrameFactory()
        await s.send_all(ff.preamble())
        for _ in range(10):  # ten minutes of virtual time, an ACK every 59.5 s
            await trio.sleep(59.5)  # (not 60: our PINGs come every 60 s)
            await s.send_all(ff.ping(KEEPALIVE_OPAQUE, ack=True))
        await s.aclose()

    async def main() -> tuple[list[hf.Frame], str, float]:
        return await _serve(TimerSettings(keepalive_time=60, keepalive_timeout=20), acks)

    frames, reason, ended = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert reason == "closed by peer" and ended >= 595


async def _serve_answering(
    settings: TimerSettings, answer_until: float, run_for: float, upstream: bool = False
) -> tuple[list[float], str, float]:
    """A peer that answers every PING at once until ``answer_until`` (virtual
    seconds), then stays silent; returns when our PINGs arrived, the close
    reason and when the connection closed (or ``run_for`` ended it).
    ``upstream``: we are the client (a backend connection) with one open
    stream, so that keepalive applies."""
    ours, theirs = trio.testing.memory_stream_pair()
    relay = Relay({}, trio.current_time)
    link = Link(Connection(client=upstream), peer="test")
    io = LinkIO(link, ours, relay, relay.on_upstream_events if upstream else relay.on_client_events)
    watch = LinkWatch(link, io, relay, settings)
    ff = FrameFactory()
    start = trio.current_time()
    pings: list[float] = []

    async def peer() -> None:
        if upstream:
            await theirs.send_all(ff.settings())
            await trio.testing.wait_all_tasks_blocked()
            link.core.open_stream(REQUEST, end_stream=False)
            link.wake()  # type: ignore[operator]
        else:
            await theirs.send_all(ff.preamble())
        buf = b""
        while True:
            try:
                data = await theirs.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            buf += data
            if buf.startswith(PREFACE):
                buf = buf[len(PREFACE) :]
            frames = []
            while len(buf) >= 9:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + length:
                    break
                frames.append(buf[: 9 + length])
                buf = buf[9 + length :]
            for fr in parse_frames(b"".join(frames)):
                if isinstance(fr, hf.PingFrame) and "ACK" not in fr.flags:
                    now = trio.current_time() - start
                    pings.append(now)
                    if now < answer_until:
                        await theirs.send_all(ff.ping(fr.opaque_data, ack=True))

    ended = run_for
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer)
        with trio.move_on_after(run_for):
            async with trio.open_nursery() as conn:
                conn.start_soon(watch.run)
                await io.run(link.core.initiate if upstream else None)
                conn.cancel_scope.cancel()
            ended = trio.current_time() - start
        nursery.cancel_scope.cancel()
    return pings, io.close_reason, ended


def test_keepalive_pings_every_keepalive_time_when_acked_at_once() -> None:
    """keepalive_time 1s, keepalive_timeout 5s: a client that ACKs at once is
    pinged every second, not every keepalive_time + keepalive_timeout (the
    timer task used to notice the ACK only at the timeout)."""
    settings = TimerSettings(keepalive_time=1, keepalive_timeout=5)
    pings, _, _ = trio.run(
        _serve_answering, settings, 1000.0, 20.0, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert len(pings) >= 17, pings
    assert gaps and max(gaps) <= 1.01, gaps


def test_keepalive_declares_a_client_dead_keepalive_time_plus_timeout_after_its_last_ack() -> None:
    settings = TimerSettings(keepalive_time=1, keepalive_timeout=5)
    pings, reason, ended = trio.run(
        _serve_answering, settings, 10.0, 60.0, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    last_answered = max(p for p in pings if p < 10.0)
    assert reason == "keepalive timeout"
    # The first unanswered PING goes out 1 s after the last ACK; 5 s later: dead.
    assert 5.0 <= ended - last_answered <= 1.0 + 5.0 + 0.01, (pings, ended)


def test_upstream_keepalive_finds_a_frozen_backend_in_keepalive_time_plus_timeout() -> None:
    """The same timers drive upstream connections: a backend that answered
    PINGs, then froze, is dead keepalive_time + keepalive_timeout later."""
    settings = TimerSettings(keepalive_time=1, keepalive_timeout=5, ping_idle=False)
    pings, reason, ended = trio.run(
        _serve_answering,
        settings,
        10.0,
        60.0,
        True,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    answered = [p for p in pings if p < 10.0]
    assert len(answered) >= 8 and max(gaps) <= 1.01, pings
    assert reason == "keepalive timeout"
    assert 5.0 <= ended - answered[-1] <= 1.0 + 5.0 + 0.01, (pings, ended)
