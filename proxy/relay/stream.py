"""One relayed call: a client stream paired with an upstream stream."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from proxy.relay.messages import MessageCount

if TYPE_CHECKING:
    from proxy.balancing.endpoint import EndpointState
    from proxy.balancing.pool import PoolSnapshot
    from proxy.config.model import Location
    from proxy.http2.connection import Stream
    from proxy.http2.hpack_codec import HeaderList
    from proxy.relay.link import Link

# Request bytes kept for a retry on another endpoint (REFUSED_STREAM or GOAWAY
# before processing); a call that sent more is not retried, as Envoy's
# per-request buffer limit.
REPLAY_LIMIT = 64 << 10
# REFUSED_STREAM says "not processed, try again": on the same endpoint too (its
# next connection may have room), but only this many times per call.
MAX_REFUSALS = 3


class Pending(MessageCount):
    """Bytes waiting to go one way, and how much of them still owes credit
    to the sender. Bounded by the window we advertise to that sender. As a
    ``MessageCount`` it also counts the bytes and gRPC messages received."""

    __slots__ = ("chunks", "size", "end", "trailers", "end_sent", "blocked_since")

    def __init__(self) -> None:
        self.bytes = self.messages = self.skip = 0
        self.head = b""
        self.chunks: deque[tuple[bytes, bool]] = deque()  # (data, ack when forwarded)
        self.size = 0
        self.end = False  # the sender ended this direction
        self.trailers: HeaderList | None = None
        self.end_sent = False
        self.blocked_since: float | None = None  # parked on a window, no progress since


class RelayStream:
    __slots__ = (
        "down_link",
        "down",
        "up_link",
        "up",
        "path",
        "location",
        "pool",
        "request_headers",
        "request",
        "response",
        "response_started",
        "replay",
        "replay_size",
        "endpoint",
        "tried",
        "refusals",
        "last_error",
        "last_data",
        "deadline",
        "done",
        "dispatched_at",
        "queued_until",
        "started",
        "status",
        "error",
        "user",
    )

    def __init__(self, down_link: Link, down: Stream, path: str, location: Location,
                 pool: PoolSnapshot, request_headers: HeaderList, now: float) -> None:
        self.down_link = down_link
        self.down = down
        self.up_link: Link | None = None
        self.up: Stream | None = None
        self.path = path
        self.location = location
        self.pool = pool
        self.request_headers = request_headers
        self.request = Pending()  # client -> upstream
        self.response = Pending()  # upstream -> client
        self.response_started = False
        self.replay: list[bytes] | None = []
        self.replay_size = 0
        self.endpoint: EndpointState | None = None
        self.tried: list[EndpointState] = []
        self.refusals = 0
        self.last_error = ""
        self.last_data = now
        self.deadline: float | None = None
        self.done = False
        self.dispatched_at = now  # least_time: response-header latency counts from here
        self.queued_until = 0.0  # waiting for a max_conns slot until then
        self.started = now
        self.status = -1  # grpc-status decided by the proxy (or CANCELLED); -1: upstream's
        self.error = ""  # why the proxy ended the call, for the access log
        self.user: str | None = None  # the bearer token's name (auth_bearer_tokens)

    def __repr__(self) -> str:
        return f"RelayStream({self.path}, down={self.down.id}, up={self.up and self.up.id})"
