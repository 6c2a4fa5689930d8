"""Connection-lifetime decisions, pure: heartbeats (PING), the peer PING
policy, idle and age limits, the client header timeout and the two-phase
graceful GOAWAY. No clock and no socket: the driver passes ``now`` and what it
observed, and gets back ``Action``s and the time to call again.

What the driver observes is deliberately cheap to keep on the hot path: a
count of receive batches (``rx``: any frame is a sign of life, a PING ACK
included), the number of streams ever started, the number open, and the
opaque of the last PING ACK the core saw.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

KEEPALIVE_OPAQUE = b"gp-alive"
DRAIN_OPAQUE = b"gp-drain"
# After the first GOAWAY (last-stream-id 2^31-1) and its PING, the real GOAWAY
# follows the PING ACK, or this long at most (a peer that never ACKs).
NOTICE_WAIT = 2.0
# While draining, how often open streams are counted (their end is not an
# event the driver reports).
DRAIN_POLL = 0.1
AGE_JITTER = 0.1  # max_connection_age is spread +-10% so reconnects do not align


class Action(Enum):
    PING = "ping"  # send a keepalive PING
    NOTICE = "notice"  # GOAWAY(2^31-1) and a PING: "finish, then reconnect"
    GOAWAY = "goaway"  # GOAWAY(last stream id): no new streams from here
    END_STREAMS = "end_streams"  # grace is over: end open streams with 14 UNAVAILABLE
    CLOSE = "close"  # flush and close the connection
    DEAD = "dead"  # no PING ACK in time: close at once, open streams fail


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """``None`` turns a timer off. ``ping_idle``: PING also without open
    streams (to clients; upstream connections ping only while in use, so idle
    grpc backends never count them as abuse)."""

    keepalive_time: float | None = None
    keepalive_timeout: float = 20.0
    idle_timeout: float | None = None
    header_timeout: float | None = None
    max_age: float | None = None
    max_age_grace: float | None = None
    ping_idle: bool = True


class ConnectionTimers:
    """Every timer of one connection. Call ``poll`` at ``next_wake`` (or
    earlier, e.g. after ``drain``); apply the actions in order."""

    def __init__(
        self, settings: TimerSettings, now: float, jitter: Callable[[], float] = random.random
    ) -> None:
        self.s = settings
        self.reason = ""  # why the connection is closing, for logs and trailers
        self.closed = False
        self._rx = 0
        self._last_rx = now
        self._started = 0
        self._ping_at: float | None = None
        self._header_deadline = now + settings.header_timeout if settings.header_timeout else None
        self._idle_since: float | None = now
        self._age_deadline = None
        if settings.max_age:
            spread = (2 * jitter() - 1) * AGE_JITTER
            self._age_deadline = now + settings.max_age * (1 + spread)
        self.draining = False
        self._final = False  # the real GOAWAY is sent
        self._notice_at = 0.0
        self._grace_deadline: float | None = None
        self._pending: list[Action] = []
        self._wake = self._next_wake(now, 0)

    # ----------------------------------------------------------------- inputs

    def drain(self, now: float, deadline: float | None, reason: str) -> None:
        """Close gracefully: open streams may run until ``deadline`` (None: no
        limit). Repeated calls only move the deadline earlier."""
        if self.closed:
            return
        if self.draining:
            if deadline is not None and (
                self._grace_deadline is None or deadline < self._grace_deadline
            ):
                self._grace_deadline = deadline
            return
        self.draining = True
        self.reason = reason
        self._notice_at = now
        self._grace_deadline = deadline
        self._pending.append(Action.NOTICE)

    def poll(
        self, now: float, rx: int, started: int, open_streams: int, last_ack: bytes = b""
    ) -> list[Action]:
        if self.closed:
            return []
        acts = self._pending
        self._pending = []
        active = rx != self._rx
        if active:
            self._rx = rx
            self._last_rx = now
        new_streams = started != self._started
        self._started = started

        if self._header_deadline is not None:
            if started:
                self._header_deadline = None
            elif now >= self._header_deadline:
                return self._close(acts, "client_header_timeout")
        keepalive = self.s.keepalive_time
        if keepalive and self._keepalive(now, keepalive, active, open_streams, acts):
            self.closed = True
            self.reason = "keepalive timeout"
            return [Action.DEAD]
        if not self.draining:
            self._idle_and_age(now, open_streams, new_streams, acts)
        if self.draining and self._drain_step(now, open_streams, last_ack, acts):
            return self._close(acts, self.reason)
        self._wake = self._next_wake(now, open_streams)
        return acts

    def _keepalive(
        self, now: float, keepalive_time: float, active: bool, open_streams: int, acts: list[Action]
    ) -> bool:
        """PING after keepalive_time of silence; True: no answer in time."""
        s = self.s
        if self._ping_at is not None:
            if active:  # anything after our PING proves the peer alive
                self._ping_at = None
            elif now >= self._ping_at + s.keepalive_timeout:
                return True
        if (
            self._ping_at is None
            and (open_streams or s.ping_idle)
            and now - self._last_rx >= keepalive_time
        ):
            acts.append(Action.PING)
            self._ping_at = now
            self._last_rx = now
        return False

    def _idle_and_age(
        self, now: float, open_streams: int, new_streams: bool, acts: list[Action]
    ) -> None:
        """Start draining when idle too long, or old enough."""
        s = self.s
        if open_streams:
            self._idle_since = None
        elif self._idle_since is None or new_streams:
            self._idle_since = now
        if (
            s.idle_timeout
            and self._idle_since is not None
            and now - self._idle_since >= s.idle_timeout
        ):
            self.drain(now, None, "idle_timeout")
        elif self._age_deadline is not None and now >= self._age_deadline:
            grace = now + s.max_age_grace if s.max_age_grace else None
            self.drain(now, grace, "max_connection_age")
        else:
            return
        acts.extend(self._pending)
        self._pending = []

    def _drain_step(
        self, now: float, open_streams: int, last_ack: bytes, acts: list[Action]
    ) -> bool:
        """The notice goes out in this batch, the real GOAWAY on a later poll;
        True once the connection is to close."""
        if (
            not self._final
            and Action.NOTICE not in acts
            and (last_ack == DRAIN_OPAQUE or now >= self._notice_at + NOTICE_WAIT)
        ):
            self._final = True
            acts.append(Action.GOAWAY)
        if not self._final:
            return False
        if not open_streams:
            return True
        if self._grace_deadline is not None and now >= self._grace_deadline:
            acts.append(Action.END_STREAMS)
            return True
        return False

    def _close(self, acts: list[Action], reason: str) -> list[Action]:
        self.closed = True
        self.reason = self.reason or reason
        acts.append(Action.CLOSE)
        return acts

    # ---------------------------------------------------------------- wakeups

    @property
    def next_wake(self) -> float:
        """When ``poll`` wants to run next (``inf``: only after ``drain``)."""
        return float("inf") if self.closed else self._wake

    def _next_wake(self, now: float, open_streams: int) -> float:
        s = self.s
        wake = float("inf")
        if self._header_deadline is not None:
            wake = self._header_deadline
        if s.keepalive_time:
            if self._ping_at is not None:
                wake = min(wake, self._ping_at + s.keepalive_timeout)
            else:
                # Activity is seen only when polled: look every half period, so
                # a PING goes out after 1 to 1.5 keepalive_time of silence.
                due = self._last_rx + s.keepalive_time
                wake = min(
                    wake,
                    due if due > now else now + s.keepalive_time / 2,
                    now + s.keepalive_time / 2,
                )
        if self.draining:
            return min(wake, now + DRAIN_POLL)
        if s.idle_timeout:
            if self._idle_since is not None:
                wake = min(wake, self._idle_since + s.idle_timeout)
            else:  # streams are open: look again later
                wake = min(wake, now + s.idle_timeout / 4)
        if self._age_deadline is not None:
            wake = min(wake, self._age_deadline)
        return wake


class PingPolicy:
    """grpc-core's answer to PING floods (``too_many_pings``): a PING while no
    stream is open, sooner than ``min_time`` after the previous one, is a
    strike; more than ``max_strikes`` strikes close the connection with GOAWAY
    ENHANCE_YOUR_CALM. A new stream clears the strikes. PINGs while streams
    are open are always fine (clients' keepalive on long streams)."""

    __slots__ = ("min_time", "max_strikes", "clock", "strikes", "_last")

    def __init__(self, min_time: float, clock: Callable[[], float], max_strikes: int = 2) -> None:
        self.min_time = min_time
        self.max_strikes = max_strikes
        self.clock = clock
        self.strikes = 0
        self._last = float("-inf")

    def on_ping(self, streams_open: bool) -> bool:
        """A PING arrived; True when the peer has gone too far."""
        now = self.clock()
        early = now - self._last < self.min_time
        self._last = now
        if streams_open or not early:
            return False
        self.strikes += 1
        return self.strikes > self.max_strikes

    def reset(self) -> None:
        self.strikes = 0
