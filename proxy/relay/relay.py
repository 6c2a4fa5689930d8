"""The relay: pairs client streams with upstream streams and moves frames
between them. Pure: it works on connection cores and links, asks a
``Connector`` for upstream streams, and is told the time.

``Relay`` takes the connection cores' events and the I/O layer's news (a
connection lost, a writer drained, a tick) and hands each to the part that
deals with it (see base.py): routing.py, retry.py, pump.py, timers.py,
endings.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.http2.events import (
    ConnectionFailed,
    DataReceived,
    Event,
    HeadersReceived,
    StreamReset,
    WindowOpened,
)
from proxy.http2.frames import ErrorCode
from proxy.relay.call import DONE, RelayStream
from proxy.relay.queue import WaitQueues
from proxy.relay.reply import Reply
from proxy.relay.retry import Connector
from proxy.relay.routing import Routing
from proxy.relay.timers import Deadlines
from proxy.status import Answer, Failure, answer_for, error_code_name

if TYPE_CHECKING:
    from proxy.balancing.pool import PoolSnapshot
    from proxy.relay.link import Link
    from proxy.relay.observer import CallObserver

__all__ = ["Connector", "Relay"]

log = logging.getLogger("grpc_proxy.relay")


class Relay(Routing):
    """The relay of one process: every client and upstream link, every call.
    Public: the event entry points below, ``attach``/``connect_failed``
    (retry.py, for the connector), ``drained`` (pump.py), ``tick`` (timers.py),
    ``flush``, and the state in base.py."""

    def __init__(self, pools: dict[str, PoolSnapshot], clock: Callable[[], float]) -> None:
        self.pools = pools
        self.clock = clock
        self.connector = None
        self.observer = None
        self.now = clock()
        self.active = {}
        self.dirty = set()
        self.deadlines = Deadlines()
        self.queues = WaitQueues()

    # ----------------------------------------------------------------- batches

    def flush(self) -> None:
        """End of a batch: wake the writer of every link that got output."""
        dirty = self.dirty
        while dirty:
            link = dirty.pop()
            # A writer woken with nothing to send costs a scheduler pass.
            if link.core.out and link.wake is not None:
                link.wake()

    # ------------------------------------------------------------------ events

    def on_client_events(self, link: Link, events: list[Event]) -> None:
        self.now = self.clock()
        for ev in events:
            # type(ev) is X: the fastest test, and mypy narrows ev by it.
            if type(ev) is DataReceived:
                rs = ev.stream.relay
                if type(rs) is RelayStream:
                    self._client_data(rs, ev.data, ev.end_stream)
                else:
                    link.core.ack_data(ev.stream, ev.flow_len)
            elif type(ev) is HeadersReceived:
                if not ev.trailers:
                    self._new_call(link, ev)
                else:
                    rs = ev.stream.relay
                    if type(rs) is RelayStream:
                        self._client_trailers(rs, ev.headers)
            elif type(ev) is WindowOpened:
                self._window_opened(link, ev.stream)
            elif type(ev) is StreamReset:
                self._client_stream_reset(link, ev)
            elif type(ev) is ConnectionFailed:  # the I/O layer closes; one line per connection
                if self.observer is not None:
                    self.observer.protocol_error(ev.kind)
                log.warning(
                    "client %s: GOAWAY %s: %s", link.peer, error_code_name(ev.code), ev.reason
                )
            # GoAwayReceived: finish what runs. The rest is the core's own business.
        self.dirty.add(link)

    def on_upstream_events(self, link: Link, events: list[Event]) -> None:
        self.now = self.clock()
        for ev in events:
            # An upstream stream's relay is its call, or None (ended, or a health probe).
            if type(ev) is DataReceived:
                rs = ev.stream.relay
                if type(rs) is RelayStream:
                    self._upstream_data(rs, ev.data, ev.end_stream)
                else:
                    link.core.ack_data(ev.stream, ev.flow_len)
            elif type(ev) is HeadersReceived:
                rs = ev.stream.relay
                if type(rs) is RelayStream:
                    self._upstream_headers(rs, ev)
            elif type(ev) is WindowOpened:
                self._window_opened(link, ev.stream)
            elif type(ev) is StreamReset:
                rs = ev.stream.relay
                if self.observer is not None:
                    _count_reset(self.observer, ev)
                if type(rs) is RelayStream:
                    self._upstream_reset(rs, ev.code)
            elif type(ev) is ConnectionFailed and self.observer is not None:
                self.observer.protocol_error(ev.kind)
        self.dirty.add(link)

    def _client_stream_reset(self, link: Link, ev: StreamReset) -> None:
        owner = ev.stream.relay
        if self.observer is not None:
            _count_reset(self.observer, ev)
        if type(owner) is RelayStream:
            self._client_reset(owner)
        elif type(owner) is Reply:  # a reply the client no longer wants
            link.blocked.pop(owner, None)
            ev.stream.relay = None

    # ------------------------------------------------------------- connections

    def upstream_lost(self, link: Link, reason: str) -> None:
        """An upstream connection closed or broke: every call on it fails with
        UNAVAILABLE, except those the peer never processed, which are retried."""
        goaway = link.core.goaway_received
        streams = list(link.core.streams.values())
        link.core.streams.clear()
        # Health-check probes count their own failure, not a passive one.
        calls = any(isinstance(s.relay, RelayStream) for s in streams)
        if link.endpoint is not None and calls and goaway is None:
            link.endpoint.record_failure(self.clock())
        for s in streams:
            s.closed = True
            rs = s.relay
            if not isinstance(rs, RelayStream) or rs.state is DONE:
                continue
            if goaway is not None and s.id > goaway and rs.replay is not None:
                self._upstream_reset(rs, ErrorCode.REFUSED_STREAM)
            else:
                rs.up = None  # nothing more can be sent there
                self._fail(rs, answer_for(Failure.UPSTREAM_LOST, detail=reason))
        link.blocked.clear()

    def client_lost(self, link: Link) -> None:
        streams = list(link.core.streams.values())
        link.core.streams.clear()
        for s in streams:
            s.closed = True
            rs = s.relay
            if isinstance(rs, RelayStream) and rs.state is not DONE:
                self._client_reset(rs)
        link.blocked.clear()

    def end_streams(self, link: Link, answer: Answer) -> None:
        """End every call of a client link with ``answer`` (a graceful close
        whose grace ran out)."""
        self.now = self.clock()
        for s in list(link.core.streams.values()):
            rs = s.relay
            if isinstance(rs, RelayStream) and rs.state is not DONE:
                self._fail(rs, answer)


def _count_reset(observer: CallObserver, ev: StreamReset) -> None:
    """A peer's RST_STREAM with an error code, or a stream error we found.
    CANCEL, NO_ERROR and REFUSED_STREAM are normal gRPC life, not errors."""
    if not ev.remote:
        observer.protocol_error("bad_frame")
    elif ev.code not in (ErrorCode.NO_ERROR, ErrorCode.CANCEL, ErrorCode.REFUSED_STREAM):
        observer.protocol_error("reset")
