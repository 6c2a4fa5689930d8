"""Flood accounting of one HTTP/2 connection (CVE-2019-9512..9518, CVE-2023-44487).

Counters cost an increment per counted frame; the clock is read only once a
counter passes its limit, to tell a burst within one second (a flood) from
a slow accumulation (a new window starts). So a peer may send up to about
twice a limit in a second without tripping it, never more.

``FloodGuard`` holds every counter of one connection and raises the GOAWAY
ENHANCE_YOUR_CALM error (errors.py, with its ``kind`` label) when one trips.
The size caps of a header block (its bytes, its CONTINUATION frames) are the
header block reader's (header_block.py).
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.http2.errors import (  # noqa: F401  (the kinds, re-exported)
    BAD_FRAME,
    FLOOD,
    HEADER_SIZE,
    RAPID_RESET,
    calm,
)
from proxy.http2.limits import Http2Limits

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


class FloodGuard:
    """The flood limits of one connection: one counter per kind of frame that
    costs us work but carries nothing for the relay, the rapid reset watch,
    and the bound on control frames queued for a peer that does not read.
    Each check raises ``H2ConnectionError`` (ENHANCE_YOUR_CALM) when it trips.

    The connection counts what it sends (``data_frames_sent``,
    ``headers_sent``): WINDOW_UPDATEs and PINGs are judged against it."""

    __slots__ = (
        "limits",
        "_pings",
        "_settings",
        "_priorities",
        "_late_resets",
        "_empty",
        "_early_resets",
        "_window_updates",
        "data_frames_sent",
        "headers_sent",
        "_ping_mark",
        "_queued",
        "_batch_first",
        "_batch_cap",
    )

    def __init__(
        self, limits: Http2Limits, max_concurrent_streams: int, clock: Callable[[], float]
    ) -> None:
        self.limits = limits
        per_second = limits.max_control_frames
        self._pings = RateLimit(per_second, clock)
        self._settings = RateLimit(per_second, clock)
        self._priorities = RateLimit(per_second, clock)
        self._late_resets = RateLimit(per_second, clock)
        self._empty = RateLimit(per_second, clock)
        self._early_resets = ResetWatch(limits.max_reset_streams, clock)
        self._window_updates = 0  # received, over the connection's life
        self.data_frames_sent = 0
        self.headers_sent = 0
        # DATA + HEADERS frames sent when the last PING arrived: a PING that
        # follows our DATA or HEADERS answers traffic (grpc-go's BDP probe)
        # and restarts the PING count, as grpc-core's pings-without-data rule.
        self._ping_mark = 0
        self._queued = 0  # control frames queued since the output was last taken
        # New streams per receive batch: above this sid, a batch opened over
        # 2x max_concurrent_streams streams (nginx's rapid reset rule).
        self._batch_cap = 4 * max(max_concurrent_streams, 1)
        self._batch_first = 0

    def ping(self) -> None:
        sent = self.data_frames_sent + self.headers_sent
        if sent != self._ping_mark:
            self._ping_mark = sent
            self._pings.count = 0
        if self._pings.hit():
            raise calm("PING flood")

    def settings(self) -> None:
        if self._settings.hit():
            raise calm("SETTINGS flood")

    def priority(self) -> None:
        if self._priorities.hit():
            raise calm("PRIORITY flood")

    def late_reset(self) -> None:
        """RST_STREAM on a stream already closed."""
        if self._late_resets.hit():
            raise calm("RST_STREAM flood")

    def empty_frame(self, reason: str) -> None:
        """An empty DATA frame without END_STREAM, or an unknown frame type."""
        if self._empty.hit():
            raise calm(reason)

    def window_update(self, streams: int) -> None:
        """A WINDOW_UPDATE arrived; ``streams``: streams opened either way."""
        self._window_updates += 1
        if self._window_updates > 5 + 2 * (
            streams + self.limits.max_window_updates_per_data_frame * self.data_frames_sent
        ):
            raise calm("WINDOW_UPDATE flood")

    def early_reset(self, last_peer_stream: int) -> None:
        """A client stream ended before its response (CVE-2023-44487)."""
        if self._early_resets.hit(last_peer_stream):
            raise calm("rapid reset: streams reset before their response", RAPID_RESET)

    def new_batch(self, last_peer_stream: int) -> None:
        """A receive batch begins."""
        self._batch_first = last_peer_stream

    def new_stream(self, stream_id: int) -> None:
        if stream_id - self._batch_first > self._batch_cap:
            raise calm("rapid reset: too many new streams at once", RAPID_RESET)

    def control_queued(self) -> None:
        """We queued an answer (ACK, RST_STREAM): a peer that makes us queue
        many without reading them is flooding us."""
        self._queued += 1
        if self._queued > self.limits.max_queued_control_frames:
            raise calm("too many queued control frames (peer not reading)")

    def output_taken(self) -> None:
        self._queued = 0
