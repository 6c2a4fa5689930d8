"""One task per connection that runs its ``ConnectionTimers`` (keepalive,
idle, header, age, graceful close) and applies their actions to the link."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from proxy.config.model import ClientConnection
from proxy.http2.frames import ErrorCode
from proxy.http2.keepalive import (
    DRAIN_OPAQUE,
    KEEPALIVE_OPAQUE,
    Action,
    ConnectionTimers,
    TimerSettings,
)
from proxy.relay.link import Link
from proxy.relay.relay import Relay
from proxy.runtime.io import LinkIO
from proxy.status import Failure, answer_for

log = logging.getLogger("grpc_proxy.lifetime")


def client_settings(c: ClientConnection) -> TimerSettings:
    return TimerSettings(
        keepalive_time=c.keepalive_time,
        keepalive_timeout=c.keepalive_timeout,
        idle_timeout=c.idle_timeout,
        header_timeout=c.header_timeout,
        max_age=c.max_age,
        max_age_grace=c.max_age_grace,
        ping_idle=True,
    )


def upstream_settings(keepalive_time: float | None, keepalive_timeout: float) -> TimerSettings:
    return TimerSettings(
        keepalive_time=keepalive_time, keepalive_timeout=keepalive_timeout, ping_idle=False
    )


class LinkWatch:
    """``on_dead`` runs when keepalive finds the peer gone, before the link is
    aborted (upstream links fail their streams there)."""

    def __init__(
        self,
        link: Link,
        io: LinkIO,
        relay: Relay,
        settings: TimerSettings,
        on_dead: Callable[[str], None] | None = None,
    ) -> None:
        self.link = link
        self.io = io
        self.relay = relay
        self.timers = ConnectionTimers(settings, trio.current_time())
        self.on_dead = on_dead
        self._kick = trio.Event()
        # A PING ACK is news for the timers now, not at their next deadline:
        # the next keepalive PING is due keepalive_time after it.
        io.on_ping_ack = self.kick

    @property
    def draining(self) -> bool:
        return self.timers.draining

    def kick(self) -> None:
        """Run the timers now (something they wait for happened)."""
        self._kick.set()

    def drain(self, deadline: float | None, reason: str) -> None:
        """Graceful close: two-phase GOAWAY, streams may run until ``deadline``."""
        self.timers.drain(trio.current_time(), deadline, reason)
        self._kick.set()

    async def run(self) -> None:
        core = self.link.core
        started: Callable[[], int] = (
            (lambda: core.next_stream_id // 2) if core.client else (lambda: core.last_peer_stream)
        )
        while True:
            with trio.move_on_at(self.timers.next_wake):
                await self._kick.wait()
            self._kick = trio.Event()
            now = trio.current_time()
            acts = self.timers.poll(
                now, self.io.rx, started(), len(core.streams), core.last_ping_ack
            )
            if acts:
                self._apply(acts)
            if self.timers.closed:
                return

    def _apply(self, acts: list[Action]) -> None:
        link, core, relay = self.link, self.link.core, self.relay
        reason = self.timers.reason
        for act in acts:
            if act is Action.PING:
                core.ping(KEEPALIVE_OPAQUE)
            elif act is Action.NOTICE:
                log.debug("%s: graceful close (%s)", link.peer, reason)
                core.announce_goaway()
                core.ping(DRAIN_OPAQUE)
            elif act is Action.GOAWAY:
                core.send_goaway(ErrorCode.NO_ERROR)
            elif act is Action.END_STREAMS:
                relay.end_streams(link, answer_for(Failure.CONNECTION_CLOSING, reason=reason))
            elif act is Action.CLOSE:
                if not core.goaway_sent and core.settings_received:
                    core.send_goaway(ErrorCode.NO_ERROR, debug=reason.encode())
                self.io.shutdown(reason)
            elif act is Action.DEAD:
                if relay.observer is not None:
                    relay.observer.timed_out("keepalive")
                log.warning(
                    "%s: no PING ACK within %gs, closing",
                    link.peer,
                    self.timers.s.keepalive_timeout,
                )
                if self.on_dead is not None:  # upstream: fail its streams, then drop it
                    self.on_dead(reason)
                    self.io.abort(reason)
                else:  # a client: tell it why, as far as a flush in bounded time can
                    core.send_goaway(ErrorCode.NO_ERROR, debug=b"keepalive timeout")
                    self.io.shutdown(reason)
        relay.dirty.add(link)
        relay.flush()
