"""Flood accounting of one HTTP/2 connection (CVE-2019-9512..9518, CVE-2023-44487).

Counters cost an increment per counted frame; the clock is read only once a
counter passes its limit, to tell a burst within one second (a flood) from
a slow accumulation (a new window starts). So a peer may send up to about
twice a limit in a second without tripping it, never more.

``kind`` values are the ``grpc_proxy_http2_protocol_errors_total`` labels.
"""

from __future__ import annotations

from collections.abc import Callable

FLOOD = "flood"  # a frame-rate limit or the outbound control frame bound
RAPID_RESET = "rapid_reset"  # CVE-2023-44487
HEADER_SIZE = "header_size"  # oversized header block, CONTINUATION flood
BAD_FRAME = "bad_frame"  # any other connection error found in what a peer sent

WINDOW = 1.0  # seconds: every rate limit is "per second"


class RateLimit:
    """At most ``limit`` hits within one ``WINDOW``."""

    __slots__ = ("limit", "count", "start", "clock")

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.count = 0
        self.clock = clock
        self.start = clock()

    def hit(self) -> bool:
        """Count one; True when the limit is exceeded within the window."""
        self.count += 1
        if self.count <= self.limit:
            return False
        now = self.clock()
        if now - self.start < WINDOW:
            return True
        self.start = now
        self.count = 1
        return False


class ResetWatch:
    """Rapid reset: streams that ended before their response (reset by the
    client, refused or malformed). Past ``limit`` of them within a second,
    and more than half of the streams opened meanwhile, it is an attack:
    legitimate clients cancel far fewer of their calls."""

    __slots__ = ("limit", "count", "start", "mark", "clock")

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.count = 0
        self.mark = 0  # the peer's last stream id when the window began
        self.clock = clock
        self.start = clock()

    def hit(self, last_stream_id: int) -> bool:
        self.count += 1
        if self.count < self.limit:
            return False
        now = self.clock()
        opened = (last_stream_id - self.mark + 1) >> 1
        if now - self.start < WINDOW and self.count * 2 > opened:
            return True
        self.start = now
        self.count = 0
        self.mark = last_stream_id
        return False
