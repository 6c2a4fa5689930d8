"""Flow-controlled forwarding, both ways, and the proxy's own replies.

DATA taken from one side is acknowledged to its sender only when it has been
queued on the other side within that side's send windows; what cannot go yet
waits in the call's ``Pending`` (bounded by the window we advertise), and the
call is parked on the blocking link until its window opens or its writer
drains. Trailers wait behind buffered DATA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.balancing.least_time import observe as observe_latency
from proxy.relay.call import DONE, RelayStream
from proxy.relay.link import OUTPUT_HIGH_WATER
from proxy.relay.reply import Reply
from proxy.relay.timers import Timers

if TYPE_CHECKING:
    from proxy.http2.connection import Stream
    from proxy.http2.events import HeadersReceived
    from proxy.http2.hpack_codec import HeaderList
    from proxy.relay.call import Pending
    from proxy.relay.link import Link


class Pump(Timers):
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
        # Within both send windows and the output bound (link.writable()): sent at once.
        if n <= up.send_window and n <= core.send_window and core.out_size < OUTPUT_HIGH_WATER:
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

    def _client_trailers(self, rs: RelayStream, headers: HeaderList) -> None:
        rs.request.trailers = headers
        rs.request.end = True
        if rs.up is not None:
            self._pump_request(rs)

    def _pump_request(self, rs: RelayStream) -> None:
        up, link = rs.up, rs.up_link
        if up is None or link is None or rs.state is DONE:
            return
        acked = self._pump(rs.request, link, up, rs, replay=True)
        if acked:
            rs.down_link.core.ack_data(rs.down, acked)
            self.dirty.add(rs.down_link)

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
        if not res.chunks and res.blocked_since is None and not res.end_sent:
            # Nothing waits: the end of _pump and _pump_response, inlined.
            link = rs.down_link
            link.core.send_headers(rs.down, ev.headers, True)
            res.end_sent = True
            self.dirty.add(link)
            self._finish(rs)
            return
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
            # Within both send windows and the output bound: sent at once.
            if (
                n <= down.send_window
                and n <= core.send_window
                and core.out_size < OUTPUT_HIGH_WATER
            ):
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

    # ------------------------------------------------------------ both ways

    def _pump(self, p: Pending, link: Link, stream: Stream, rs: RelayStream, replay: bool) -> int:
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

    def _discard(
        self,
        p: Pending,
        sender: Link | None,
        stream: Stream | None,
        receiver: Link | None,
        rs: RelayStream,
    ) -> None:
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

    # ---------------------------------------------------- windows and writers

    def _window_opened(self, link: Link, stream: Stream | None) -> None:
        if stream is not None:
            owner = stream.relay
            if (type(owner) is RelayStream or type(owner) is Reply) and owner in link.blocked:
                self._resume(link, owner)
            return
        for parked in list(link.blocked):
            if not link.writable():
                break
            self._resume(link, parked)

    def drained(self, link: Link) -> None:
        """The link's writer flushed: streams waiting on its buffer may go on."""
        if link.blocked:
            self.now = self.clock()
            self._window_opened(link, None)

    def _resume(self, link: Link, parked: RelayStream | Reply) -> None:
        if type(parked) is Reply:
            self._pump_reply(link, parked)
        elif parked.state is DONE:
            link.blocked.pop(parked, None)
        elif link is parked.up_link:
            self._pump_request(parked)
        else:
            self._pump_response(parked)

    # ------------------------------------------------------ the proxy's replies

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
