"""The relay: pairs client streams with upstream streams and moves frames
between them. Pure: it works on connection cores and links, asks a
``Connector`` for upstream streams, and is told the time.

Backpressure: DATA taken from one side is acknowledged to its sender only when
it has been queued on the other side within that side's send windows; what
cannot go yet waits in the stream's ``Pending`` (bounded by the window we
advertise), and the stream is parked on the blocking link until its window
opens or its writer drains.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from typing import Protocol

from proxy.balancing.endpoint import EndpointState
from proxy.balancing.least_time import observe as observe_latency
from proxy.balancing.policy import PickContext
from proxy.balancing.pool import Miss, PoolSnapshot
from proxy.grpc_timeout import parse_grpc_timeout
from proxy.http2.connection import Stream
from proxy.http2.events import (
    ConnectionFailed,
    DataReceived,
    Event,
    GoAwayReceived,
    HeadersReceived,
    StreamReset,
    WindowOpened,
)
from proxy.http2.frames import ErrorCode
from proxy.http2.hpack_codec import HeaderBlock, HeaderList
from proxy.relay.call import DONE, Pending, RelayStream
from proxy.relay.link import Link
from proxy.relay.observer import CallObserver
from proxy.relay.queue import WaitQueues
from proxy.relay.reply import Reply
from proxy.security.access import check as check_access
from proxy.status import (
    Answer,
    Failure,
    answer_for,
    answer_for_reset,
    error_code_name,
    http_error,
    trailers,
    trailers_only,
)

log = logging.getLogger("grpc_proxy.relay")


class Connector(Protocol):
    def acquire(self, endpoint: EndpointState, rs: RelayStream, connect_timeout: float) -> None:
        """Call ``relay.attach(rs, link)`` now or later with a link that can
        open a stream, or ``relay.connect_failed(rs, endpoint, reason)``."""


class Relay:
    def __init__(self, pools: dict[str, PoolSnapshot], clock: Callable[[], float]) -> None:
        self.pools = pools
        self.clock = clock
        self.connector: Connector | None = None
        self.observer: CallObserver | None = None  # metrics and access log
        self.now = clock()  # read once per batch at each entry point, not per frame
        self.active: dict[RelayStream, None] = {}
        self.dirty: set[Link] = set()
        self._deadlines: list[tuple[float, int, RelayStream]] = []
        self._seq = 0
        self.queues = WaitQueues()  # calls waiting for a max_conns slot

    # ----------------------------------------------------------------- batches

    def flush(self) -> None:
        """End of a batch: wake the writer of every link that got output."""
        dirty = self.dirty
        while dirty:
            link = dirty.pop()
            # A writer woken with nothing to send costs a scheduler pass.
            if link.core.out and link.wake is not None:
                link.wake()  # type: ignore[operator]

    def on_client_events(self, link: Link, events: list[Event]) -> None:
        self.now = self.clock()
        for ev in events:
            t = type(ev)
            if t is DataReceived:
                rs = ev.stream.relay  # type: ignore[attr-defined]
                if type(rs) is RelayStream:
                    self._client_data(rs, ev.data, ev.end_stream)  # type: ignore[attr-defined]
                else:
                    link.core.ack_data(ev.stream, ev.flow_len)  # type: ignore[attr-defined]
            elif t is HeadersReceived:
                if ev.trailers:  # type: ignore[attr-defined]
                    rs = ev.stream.relay  # type: ignore[attr-defined]
                    if type(rs) is RelayStream:
                        rs.request.trailers = ev.headers  # type: ignore[attr-defined]
                        rs.request.end = True
                        if rs.up is not None:
                            self._pump_request(rs)
                else:
                    self._new_call(link, ev)  # type: ignore[arg-type]
            elif t is WindowOpened:
                self._window_opened(link, ev.stream)  # type: ignore[attr-defined]
            elif t is StreamReset:
                rs = ev.stream.relay  # type: ignore[attr-defined]
                if self.observer is not None:
                    _count_reset(self.observer, ev)  # type: ignore[arg-type]
                if type(rs) is RelayStream:
                    self._client_reset(rs)
                elif rs is not None:  # a Reply the client no longer wants
                    link.blocked.pop(rs, None)  # type: ignore[arg-type]
                    ev.stream.relay = None  # type: ignore[attr-defined]
            elif t is ConnectionFailed:  # the I/O layer closes; one line per connection
                if self.observer is not None:
                    self.observer.protocol_error(ev.kind)  # type: ignore[attr-defined]
                log.warning("client %s: GOAWAY %s: %s", link.peer,
                            error_code_name(ev.code), ev.reason)  # type: ignore[attr-defined]
            elif t is GoAwayReceived:
                pass  # finish what runs
        self.dirty.add(link)

    def on_upstream_events(self, link: Link, events: list[Event]) -> None:
        self.now = self.clock()
        for ev in events:
            t = type(ev)
            if t is DataReceived:
                rs = ev.stream.relay  # type: ignore[attr-defined]
                if rs is not None:
                    self._upstream_data(rs, ev.data, ev.end_stream)  # type: ignore[attr-defined]
                else:
                    link.core.ack_data(ev.stream, ev.flow_len)  # type: ignore[attr-defined]
            elif t is HeadersReceived:
                rs = ev.stream.relay  # type: ignore[attr-defined]
                if rs is not None:
                    self._upstream_headers(rs, ev)  # type: ignore[arg-type]
            elif t is WindowOpened:
                self._window_opened(link, ev.stream)  # type: ignore[attr-defined]
            elif t is StreamReset:
                rs = ev.stream.relay  # type: ignore[attr-defined]
                if self.observer is not None:
                    _count_reset(self.observer, ev)  # type: ignore[arg-type]
                if rs is not None:
                    self._upstream_reset(rs, ev.code)  # type: ignore[attr-defined]
            elif t is ConnectionFailed and self.observer is not None:
                self.observer.protocol_error(ev.kind)  # type: ignore[attr-defined]
        self.dirty.add(link)

    # ---------------------------------------------------------- new requests

    def _new_call(self, link: Link, ev: HeadersReceived) -> None:
        down: Stream = ev.stream  # type: ignore[assignment]
        headers = ev.headers
        info = getattr(headers, "info", None)
        if info is None:
            info = _request_fields(headers)
            if type(headers) is HeaderBlock:
                headers.info = info
        path, method, ctype, timeout = info  # type: ignore[misc]
        spath = path.decode("latin-1")
        location = None
        refusal: Answer | None = None
        if method != b"POST":
            refusal = answer_for(Failure.BAD_METHOD)
        elif not _is_grpc_content_type(ctype):
            refusal = answer_for(Failure.BAD_CONTENT_TYPE)
        elif link.server is not None:
            location = link.server.match(spath)
            if location is not None and location.access is not None:  # allow/deny, tokens
                refusal, user, headers = check_access(location.access, link, headers)
                if refusal is not None:
                    location = None
        if location is None:
            refusal = refusal or answer_for(Failure.NO_ROUTE, path=spath)
            if self.observer is not None:
                self.observer.call_refused(link, spath, refusal, self.now)
            self._answer_client(link, down, refusal, False)
            if refusal.http_status == 200:  # gRPC: a client still sending is stopped
                self._close_client_stream(link, down)
            return
        pool = self.pools.get(location.upstream)
        if pool is None:  # a connection draining after a reload that removed the upstream
            self._answer_client(link, down, answer_for(Failure.NO_ENDPOINT,
                                                       upstream=location.upstream), False)
            self._close_client_stream(link, down)
            return
        now = self.now
        rs = RelayStream(link, down, spath, location, pool, headers, now)
        if location.access is not None:
            rs.user = user
        down.relay = rs
        rs.request.end = ev.end_stream
        self.active[rs] = None
        if timeout:
            seconds = parse_grpc_timeout(timeout)
            if seconds is not None:
                rs.deadline = now + seconds
                self._seq += 1
                heapq.heappush(self._deadlines, (rs.deadline, self._seq, rs))
        self._dispatch(rs)

    def _dispatch(self, rs: RelayStream) -> None:
        """Pick an endpoint not tried yet and ask for a stream on it."""
        tries = rs.location.next_upstream_tries
        ep = None
        pool = rs.pool
        ctx = PickContext(rs.down_link.peer, rs.request_headers, rs.path) \
            if pool.needs_context else None
        if not tries or len(rs.tried) < tries:
            ep = pool.pick(self.now, rs.tried, ctx)
            if ep is None and (pool.primaries or pool.backups) and self._no_pick(rs, ctx):
                return
        if ep is None:
            if rs.last_error:
                self._fail(rs, answer_for(Failure.CONNECT_FAILED, detail=rs.last_error))
            elif not pool.primaries and not pool.backups:
                self._fail(rs, answer_for(Failure.NO_SERVERS, upstream=pool.name))
            else:
                self._fail(rs, answer_for(Failure.NO_ENDPOINT, upstream=pool.name))
            return
        if (rs.tried or rs.refusals) and self.observer is not None:
            self.observer.retried(rs)
        rs.connecting(ep, self.now)
        ep.active += 1
        timeout = rs.location.connect_timeout or rs.pool.connect_timeout
        assert self.connector is not None
        self.connector.acquire(ep, rs, timeout)

    def _no_pick(self, rs: RelayStream, ctx: PickContext | None) -> bool:
        """The pool had no endpoint for ``rs``: True if handled here (a subset
        miss, or every endpoint at max_conns: queued or failed)."""
        pool = rs.pool
        if not pool.needs_context and not pool.capped:
            return False
        miss, detail = pool.miss(self.now, rs.tried, ctx)
        if miss is Miss.SUBSET:
            self._fail(rs, answer_for(Failure.SUBSET_MISS, subset=detail))
        elif miss is Miss.FULL:
            if rs.queued_until == 0.0:
                rs.queued_until = self.now + pool.queue_timeout
            if rs.queued_until <= self.now or not self.queues.push(rs):
                self._fail(rs, answer_for(Failure.MAX_CONNS, upstream=pool.name))
            else:
                rs.queued()
        else:
            return False
        return True

    def attach(self, rs: RelayStream, link: Link) -> None:
        """An upstream link has room for ``rs``: open its stream there."""
        if rs.state is DONE:
            return
        self.now = self.clock()
        req = rs.request
        end = req.end and not req.chunks and req.trailers is None and not rs.replay_size
        up = link.core.open_stream(rs.request_headers, end)
        up.relay = rs
        rs.streaming(link, up)
        if end:
            req.end_sent = True
        elif rs.replay_size:
            rs.take_replay()  # a retry: what the failed attempt sent goes first
        self.dirty.add(link)
        if req.chunks or req.end or req.trailers is not None:
            self._pump_request(rs)

    def connect_failed(self, rs: RelayStream, endpoint: EndpointState, reason: str) -> None:
        self.now = self.clock()
        endpoint.record_failure(self.now)
        self._release_endpoint(rs)
        if rs.state is DONE:
            return
        rs.connect_failed(f"{endpoint.address}: {reason}")
        log.warning("upstream %s: %s", endpoint.address, reason)
        self._dispatch(rs)

    # ------------------------------------------------------------- client side

    def _client_data(self, rs: RelayStream, data: memoryview | bytes, end: bool) -> None:
        rs.last_data = self.now
        req = rs.request
        if self.observer is not None:
            req.feed(data)  # bytes and messages, for metrics and the access log
        up = rs.up
        if up is None or req.chunks or rs.up_link is None:
            if data:
                req.chunks.append((bytes(data), True))
                req.size += len(data)
            req.end = req.end or end
            if up is not None:
                self._pump_request(rs)
            return
        link = rs.up_link
        core = link.core
        n = len(data)
        window = min(up.send_window, core.send_window)
        if n <= window and link.writable():
            core.send_data(up, data, end)
            if end:
                req.end = req.end_sent = True
            rs.keep_for_replay(data)
            rs.down_link.core.ack_data(rs.down, n)
            self.dirty.add(link)
            self.dirty.add(rs.down_link)
            return
        req.chunks.append((bytes(data), True))
        req.size += n
        req.end = req.end or end
        self._pump_request(rs)

    def _pump_request(self, rs: RelayStream) -> None:
        up, link = rs.up, rs.up_link
        if up is None or link is None or rs.state is DONE:
            return
        acked = self._pump(rs.request, link, up, rs, replay=True)
        if acked:
            rs.down_link.core.ack_data(rs.down, acked)
            self.dirty.add(rs.down_link)

    def _pump_response(self, rs: RelayStream) -> None:
        if rs.state is DONE:
            return
        acked = self._pump(rs.response, rs.down_link, rs.down, rs, replay=False)
        if acked and rs.up_link is not None and rs.up is not None:
            rs.up_link.core.ack_data(rs.up, acked)
            self.dirty.add(rs.up_link)
        res = rs.response
        if res.end_sent:
            self._finish(rs)

    def _pump(self, p: Pending, link: Link, stream: Stream, rs: RelayStream,
              replay: bool) -> int:
        """Send what the windows allow; park ``rs`` on ``link`` if anything is
        left. Returns the bytes that owe credit to their sender."""
        core = link.core
        chunks = p.chunks
        acked = 0
        sent = False
        while chunks:
            window = min(stream.send_window, core.send_window)
            if window <= 0 or not link.writable():
                break
            data, owes = chunks[0]
            if len(data) <= window:
                chunks.popleft()
                last = not chunks and p.end and p.trailers is None
                core.send_data(stream, data, last)
                if last:
                    p.end_sent = True
            else:
                core.send_data(stream, data[:window], False)
                chunks[0] = (data[window:], owes)
                data = data[:window]
            p.size -= len(data)
            sent = True
            if owes:
                acked += len(data)
            if replay:
                rs.keep_for_replay(data)
        self.dirty.add(link)
        if chunks:
            if p.blocked_since is None or sent:
                p.blocked_since = self.now  # grpc_send_timeout counts from here
            link.blocked[rs] = None
            return acked
        if p.blocked_since is not None:
            p.blocked_since = None
            link.blocked.pop(rs, None)
        if p.end and not p.end_sent:
            if p.trailers is not None:
                core.send_headers(stream, p.trailers, True)
            else:
                core.send_data(stream, b"", True)
            p.end_sent = True
        return acked

    def _window_opened(self, link: Link, stream: Stream | None) -> None:
        if stream is not None:
            rs = stream.relay
            if rs is not None and rs in link.blocked:
                self._resume(link, rs)  # type: ignore[arg-type]
            return
        for rs in list(link.blocked):
            if not link.writable():
                break
            self._resume(link, rs)

    def drained(self, link: Link) -> None:
        """The link's writer flushed: streams waiting on its buffer may go on."""
        if link.blocked:
            self.now = self.clock()
            self._window_opened(link, None)

    def _resume(self, link: Link, rs: RelayStream | Reply) -> None:
        if type(rs) is Reply:
            self._pump_reply(link, rs)
        elif rs.state is DONE:  # type: ignore[union-attr]
            link.blocked.pop(rs, None)
        elif link is rs.up_link:  # type: ignore[union-attr]
            self._pump_request(rs)  # type: ignore[arg-type]
        else:
            self._pump_response(rs)  # type: ignore[arg-type]

    def _client_reset(self, rs: RelayStream) -> None:
        """The client cancelled (or broke) its stream: cancel upstream at once."""
        if rs.state is not DONE:
            _record(rs, answer_for(Failure.CLIENT_CANCELLED))
        self._cancel_upstream(rs)
        self._cleanup(rs)

    # ----------------------------------------------------------- upstream side

    def _upstream_headers(self, rs: RelayStream, ev: HeadersReceived) -> None:
        if rs.state is DONE:
            return
        res = rs.response
        if not ev.trailers:
            rs.response_started = True
            rs.replay = None
            if rs.endpoint is not None:
                rs.endpoint.record_success()
                if rs.pool.timed:
                    observe_latency(rs.endpoint, self.now - rs.dispatched_at, self.now)
            rs.down_link.core.send_headers(rs.down, ev.headers, ev.end_stream)
            self.dirty.add(rs.down_link)
            if ev.end_stream:
                res.trailers = ev.headers  # trailers-only: its grpc-status ends the call
                res.end = res.end_sent = True
                self._finish(rs)
            return
        res.trailers = ev.headers
        res.end = True
        self._pump_response(rs)

    def _upstream_data(self, rs: RelayStream, data: memoryview | bytes, end: bool) -> None:
        if rs.state is DONE:
            return
        rs.last_data = self.now
        res = rs.response
        if self.observer is not None:
            res.feed(data)
        down = rs.down
        if not res.chunks:
            link = rs.down_link
            core = link.core
            n = len(data)
            if n <= min(down.send_window, core.send_window) and link.writable():
                core.send_data(down, data, end)
                self.dirty.add(link)
                if rs.up is not None and rs.up_link is not None:
                    rs.up_link.core.ack_data(rs.up, n)
                if end:
                    res.end = res.end_sent = True
                    self._finish(rs)
                return
        if data:
            res.chunks.append((bytes(data), True))
            res.size += len(data)
        res.end = res.end or end
        self._pump_response(rs)

    def _upstream_reset(self, rs: RelayStream, code: int) -> None:
        if rs.state is DONE:
            return
        up = rs.up
        if up is not None and up.remote_closed:
            # The response is complete (trailers may still be queued): the reset
            # only stops the request direction.
            self._discard(rs.request, rs.down_link, rs.down, rs.up_link, rs)
            return
        if code == ErrorCode.REFUSED_STREAM and rs.retryable():
            rs.rewind_for_retry()
            self._release_endpoint(rs)
            self._dispatch(rs)
            return
        if not rs.response_started:
            self._fail(rs, answer_for_reset(code, started=False))
            return
        link = rs.down_link
        link.core.reset_stream(rs.down, ErrorCode.CANCEL)
        _record(rs, answer_for_reset(code, started=True))
        self.dirty.add(link)
        self._cleanup(rs)


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

    # ---------------------------------------------------------------- endings

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

    def tick(self, now: float) -> None:
        """Timers: proxy-side deadlines, the per-stream idle timeout, and the
        send timeout of a stream whose peer takes nothing (a zero window)."""
        self.now = now
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, rs = heapq.heappop(heap)
            if rs.state is not DONE:
                if self.observer is not None:
                    self.observer.timed_out("deadline")
                self._fail(rs, answer_for(Failure.DEADLINE))
        if self.queues.size:
            for rs in self.queues.expired(now):
                self._fail(rs, answer_for(Failure.QUEUE_TIMEOUT, upstream=rs.pool.name))
        for rs in list(self.active):
            loc = rs.location
            if rs.state is DONE:
                continue
            if loc.read_timeout and now - rs.last_data >= loc.read_timeout:
                if self.observer is not None:
                    self.observer.timed_out("read")
                self._fail(rs, answer_for(Failure.READ_TIMEOUT))
            elif loc.send_timeout and (
                _stalled(rs.request, now, loc.send_timeout)
                or _stalled(rs.response, now, loc.send_timeout)
            ):
                if self.observer is not None:
                    self.observer.timed_out("send")
                self._fail(rs, answer_for(Failure.SEND_TIMEOUT))

    def _fail(self, rs: RelayStream, answer: Answer) -> None:
        """End the call at the proxy with ``answer``: cancel upstream, tell the
        client (trailers-only if nothing was sent yet, else trailers)."""
        if rs.state is DONE:
            return
        _record(rs, answer)
        self._cancel_upstream(rs)
        link = rs.down_link
        down = rs.down
        self._answer_client(link, down, answer, rs.response_started)
        self._close_client_stream(link, down)
        self._cleanup(rs)

    def _answer_client(self, link: Link, down: Stream, answer: Answer, started: bool) -> None:
        if down.closed:
            return
        if answer.http_status != 200:
            self._reply(link, down, answer)
            return
        if started:
            block = trailers(answer.grpc_status, answer.message)
        else:
            block = trailers_only(answer.grpc_status, answer.message)
        link.core.send_headers(down, block, True)
        self.dirty.add(link)

    def _reply(self, link: Link, down: Stream, answer: Answer) -> None:
        """A non-gRPC request: its HTTP status, and the reason as text, as a web
        server answers."""
        body = f"{answer.message}\n".encode()
        link.core.send_headers(down, http_error(answer.http_status, len(body)), False)
        reply = Reply(down, body)
        down.relay = reply
        self._pump_reply(link, reply)

    def _pump_reply(self, link: Link, reply: Reply) -> None:
        down, core = reply.stream, link.core
        if down.closed:
            link.blocked.pop(reply, None)
            return
        window = min(down.send_window, core.send_window)
        if window > 0 and link.writable():
            chunk, last = reply.take(window)
            core.send_data(down, chunk, last)
            self.dirty.add(link)
            if last:  # a request still arriving is read and dropped (RFC 9113 8.1)
                link.blocked.pop(reply, None)
                down.relay = None
                return
        link.blocked[reply] = None

    def _close_client_stream(self, link: Link, down: Stream) -> None:
        """After our END_STREAM: a client still sending is told to stop, as gRPC
        servers do (RST_STREAM NO_ERROR)."""
        if not down.closed and not down.remote_closed:
            link.core.reset_stream(down, ErrorCode.NO_ERROR)
            self.dirty.add(link)

    def _cancel_upstream(self, rs: RelayStream) -> None:
        up, link = rs.up, rs.up_link
        if up is not None and link is not None and not up.closed:
            link.core.reset_stream(up, ErrorCode.CANCEL)
            self.dirty.add(link)

    def _finish(self, rs: RelayStream) -> None:
        """The client has the whole response."""
        if rs.state is DONE:
            return
        self._close_client_stream(rs.down_link, rs.down)
        up, link = rs.up, rs.up_link
        if up is not None and link is not None and not up.closed and not up.local_closed:
            link.core.reset_stream(up, ErrorCode.NO_ERROR)
            self.dirty.add(link)
        self._cleanup(rs)

    def _cleanup(self, rs: RelayStream) -> None:
        if rs.state is DONE:
            return
        rs.end()
        self.active.pop(rs, None)
        if self.observer is not None:
            self.observer.call_ended(rs)
        self._release_endpoint(rs)
        self._discard(rs.request, rs.down_link, rs.down, rs.up_link, rs)
        self._discard(rs.response, rs.up_link, rs.up, rs.down_link, rs)
        rs.down.relay = None
        if rs.up is not None:
            rs.up.relay = None
        rs.replay = None

    def _discard(self, p: Pending, sender: Link | None, stream: Stream | None,
                 receiver: Link | None, rs: RelayStream) -> None:
        """Drop bytes that will never be forwarded, returning their connection
        credit to the sender, and unpark ``rs`` from the receiving link."""
        if p.chunks:
            owed = sum(len(d) for d, owes in p.chunks if owes)
            if owed and sender is not None and stream is not None:
                sender.core.ack_data(stream, owed)
                self.dirty.add(sender)
            p.chunks.clear()
            p.size = 0
        if p.blocked_since is not None:
            p.blocked_since = None
            if receiver is not None:
                receiver.blocked.pop(rs, None)

    def _release_endpoint(self, rs: RelayStream) -> None:
        ep = rs.endpoint
        if ep is not None:
            ep.active -= 1
            rs.endpoint = None
            if self.queues.size and ep.max_conns:
                self._serve_queue(rs.pool.name)

    def _serve_queue(self, name: str) -> None:
        """A slot freed in upstream ``name``: dispatch queued calls until one
        takes it (a call that cannot use it goes back to the queue's end)."""
        for _ in range(self.queues.waiting(name)):
            rs = self.queues.pop(name)
            if rs is None:
                return
            rs.dequeued()
            self._dispatch(rs)
            if rs.endpoint is not None or rs.state is DONE:
                return


def _count_reset(observer: CallObserver, ev: StreamReset) -> None:
    """A peer's RST_STREAM with an error code, or a stream error we found.
    CANCEL, NO_ERROR and REFUSED_STREAM are normal gRPC life, not errors."""
    if not ev.remote:
        observer.protocol_error("bad_frame")
    elif ev.code not in (ErrorCode.NO_ERROR, ErrorCode.CANCEL, ErrorCode.REFUSED_STREAM):
        observer.protocol_error("reset")


def _stalled(p: Pending, now: float, timeout: float) -> bool:
    return p.blocked_since is not None and now - p.blocked_since >= timeout


def _request_fields(headers: HeaderList) -> tuple[bytes, bytes, bytes, bytes]:
    """(:path, :method, content-type, grpc-timeout) of a request."""
    path = method = ctype = timeout = b""
    for name, value in headers:
        if name == b":path":
            path = value
        elif name == b":method":
            method = value
        elif name == b"content-type":
            ctype = value
        elif name == b"grpc-timeout":
            timeout = value
    return path, method, ctype, timeout


def _is_grpc_content_type(ctype: bytes) -> bool:
    """application/grpc, optionally +format (+proto, +json) or ;parameters."""
    return ctype.startswith(b"application/grpc") and ctype[16:17] in (b"", b"+", b";")


def _record(rs: RelayStream, answer: Answer) -> None:
    """How the proxy (or the client) ended ``rs``, for metrics and the access log."""
    rs.status = answer.grpc_status
    rs.error = answer.message
