"""One relayed call: a client stream paired with an upstream stream, and the
states it goes through. Each move is a method of the call, named for it, that
checks the state it starts from; the relay decides when to make it. Every
other (state, move) pair is a bug in the relay or its connector
(``CallStateError``); tests/unit/test_call.py holds the whole table.

    state       move               next        when
    ROUTING     connecting()       CONNECTING  an endpoint was picked
    ROUTING     queued()           QUEUED      every endpoint it may use is at max_conns
    QUEUED      dequeued()         ROUTING     a max_conns slot freed
    CONNECTING  streaming()        STREAMING   the connector attached it to a connection
    CONNECTING  connect_failed()   ROUTING     no connection to that endpoint
    STREAMING   rewind_for_retry() ROUTING     refused: certainly never processed
    any but DONE  end()            DONE        answered, finished, cancelled or failed

Only a call that certainly never reached an upstream goes back to ROUTING.
"""

from __future__ import annotations

from collections import deque
from enum import Enum
from typing import TYPE_CHECKING, final

from proxy.relay.messages import MessageCount

if TYPE_CHECKING:
    from proxy.balancing.endpoint import Endpoint
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


class CallState(Enum):
    ROUTING = "routing"  # choosing an endpoint: the first one, or another after a refusal
    QUEUED = "queued"  # every endpoint it may use is at max_conns: waiting for a slot
    CONNECTING = "connecting"  # the connector finds or opens a connection to the endpoint
    STREAMING = "streaming"  # its upstream stream is open
    DONE = "done"  # ended: answered, finished, cancelled or failed


# Module-level names: enum attribute lookups are slow, and the relay tests
# states on its hot path.
ROUTING = CallState.ROUTING
QUEUED = CallState.QUEUED
CONNECTING = CallState.CONNECTING
STREAMING = CallState.STREAMING
DONE = CallState.DONE


class CallStateError(Exception):  # not RuntimeError: mypyc subclasses Exception only
    """A move the call's state does not allow: a bug in the relay or its connector."""


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


@final
class RelayStream:
    """A call. ``state`` says where it is (``CallState``); the rest is what
    the relay needs to forward it, retry it, and report it."""

    __slots__ = (
        "state",
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
        "dispatched_at",
        "queued_until",
        "started",
        "status",
        "error",
        "user",
    )

    def __init__(
        self,
        down_link: Link,
        down: Stream,
        path: str,
        location: Location,
        pool: PoolSnapshot,
        request_headers: HeaderList,
        now: float,
    ) -> None:
        self.state = ROUTING
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
        self.replay: list[bytes] | None = []  # request DATA sent upstream, for a retry
        self.replay_size = 0
        self.endpoint: Endpoint | None = None  # the endpoint of the current attempt
        self.tried: list[Endpoint] = []
        self.refusals = 0
        self.last_error = ""
        self.last_data = now
        self.deadline: float | None = None
        self.dispatched_at = now  # least_time: response-header latency counts from here
        self.queued_until = 0.0  # waiting for a max_conns slot until then
        self.started = now
        self.status: int = -1  # grpc-status decided by the proxy (or CANCELLED); -1: upstream's
        self.error = ""  # why the proxy ended the call, for the access log
        self.user: str | None = None  # the bearer token's name (auth_bearer_tokens)

    @property
    def done(self) -> bool:
        return self.state is DONE

    def __repr__(self) -> str:
        return (
            f"RelayStream({self.path}, {self.state.value}, down={self.down.id}, "
            f"up={self.up and self.up.id})"
        )

    # ------------------------------------------------------------ transitions

    def _no_move(self, move: str) -> CallStateError:
        return CallStateError(f"{self!r}: no {move}() from {self.state.value}")

    def connecting(self, endpoint: Endpoint, now: float) -> None:
        """ROUTING -> CONNECTING: ``endpoint`` was picked for the next attempt."""
        if self.state is not ROUTING:
            raise self._no_move("connecting")
        self.state = CONNECTING
        self.tried.append(endpoint)
        self.endpoint = endpoint
        self.dispatched_at = now

    def queued(self) -> None:
        """ROUTING -> QUEUED: it waits in the relay's ``WaitQueues``."""
        if self.state is not ROUTING:
            raise self._no_move("queued")
        self.state = QUEUED

    def dequeued(self) -> None:
        """QUEUED -> ROUTING: a slot freed; it is dispatched again."""
        if self.state is not QUEUED:
            raise self._no_move("dequeued")
        self.state = ROUTING

    def streaming(self, link: Link, up: Stream) -> None:
        """CONNECTING -> STREAMING: its stream ``up`` is open on ``link``."""
        if self.state is not CONNECTING:
            raise self._no_move("streaming")
        self.state = STREAMING
        self.up_link = link
        self.up = up

    def connect_failed(self, error: str) -> None:
        """CONNECTING -> ROUTING: no stream on that endpoint; another may do."""
        if self.state is not CONNECTING:
            raise self._no_move("connect_failed")
        self.state = ROUTING
        self.last_error = error

    def retryable(self) -> bool:
        """The upstream surely did not process it (the caller knows why: a
        REFUSED_STREAM, or a stream above a GOAWAY's last id), and it may go
        again: no response yet, its request bytes still kept, refusals left."""
        return (
            not self.response_started and self.replay is not None and self.refusals < MAX_REFUSALS
        )

    def rewind_for_retry(self) -> None:
        """STREAMING -> ROUTING after a refusal: forget the attempt (its
        stream, its parking, what was sent) so the call can be dispatched
        again; ``take_replay`` then puts the bytes sent back in front. The
        endpoint stays set, for the relay to release."""
        if self.state is not STREAMING:
            raise self._no_move("rewind_for_retry")
        self.state = ROUTING
        self.refusals += 1
        ep = self.endpoint
        if ep is not None and ep in self.tried:
            self.tried.remove(ep)  # a refusal is no fault of the endpoint
        if self.up_link is not None:
            self.up_link.blocked.pop(self, None)
        self.request.blocked_since = None
        self.up = self.up_link = None
        self.request.end_sent = False
        self.last_error = "stream refused"

    def end(self) -> None:
        """Any state but DONE -> DONE."""
        if self.state is DONE:
            raise self._no_move("end")
        self.state = DONE

    # ----------------------------------------------------------------- replay

    def keep_for_replay(self, data: memoryview | bytes) -> None:
        """``data`` went upstream: keep it while a retry is still possible."""
        if self.replay is None or self.response_started:
            return
        self.replay_size += len(data)
        if self.replay_size > REPLAY_LIMIT:
            self.replay = None  # too much to replay: this call will not be retried
        elif data:
            self.replay.append(bytes(data))

    def take_replay(self) -> None:
        """A retry's new stream: what the failed attempt sent goes first, already
        acknowledged to the client."""
        replay = self.replay
        if not self.replay_size or replay is None:
            return
        req = self.request
        req.chunks.extendleft([(chunk, False) for chunk in reversed(replay)])
        req.size += self.replay_size
        self.replay = []
        self.replay_size = 0
