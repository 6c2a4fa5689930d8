"""LinkWatch driving a real LinkIO over in-memory streams, on trio's
MockClock: minutes of keepalive and header timers in milliseconds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
import trio.testing
from hyperframe import frame as hf

from proxy.http2.connection import Connection
from proxy.http2.keepalive import KEEPALIVE_OPAQUE, TimerSettings
from proxy.relay.link import Link
from proxy.relay.relay import Relay
from proxy.runtime.io import LinkIO
from proxy.runtime.lifetime import LinkWatch
from tests.unit.frame_factory import FrameFactory, parse_frames


async def _serve(settings: TimerSettings, peer_script: Callable[[trio.abc.Stream], Awaitable[None]]
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
        for _ in range(10):  # ten minutes of virtual time, answering every PING
            await trio.sleep(60)
            await s.send_all(ff.ping(KEEPALIVE_OPAQUE, ack=True))
        await s.aclose()

    async def main() -> tuple[list[hf.Frame], str, float]:
        return await _serve(TimerSettings(keepalive_time=60, keepalive_timeout=20), acks)

    frames, reason, ended = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert reason == "closed by peer" and ended >= 600
