"""How a call ends: finished (the client has the whole response), failed at
the proxy (a status from proxy/status.py, trailers-only if nothing was sent
yet, else trailers), cancelled by the client, or reset by the upstream. Every
ending goes through ``_cleanup``, once: the call leaves ``active``, the
observer hears of it, its endpoint slot and unsent bytes are given back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.http2.frames import ErrorCode
from proxy.relay.base import RelayBase
from proxy.relay.call import DONE
from proxy.relay.reply import Reply
from proxy.status import (
    Answer,
    Failure,
    answer_for,
    answer_for_reset,
    http_error,
    trailers,
    trailers_only,
)

if TYPE_CHECKING:
    from proxy.http2.connection import Stream
    from proxy.relay.call import RelayStream
    from proxy.relay.link import Link


class Endings(RelayBase):
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

    def _client_reset(self, rs: RelayStream) -> None:
        """The client cancelled (or broke) its stream: cancel upstream at once."""
        if rs.state is not DONE:
            _record(rs, answer_for(Failure.CLIENT_CANCELLED))
        self._cancel_upstream(rs)
        self._cleanup(rs)

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
            self._retry_refused(rs)
            return
        if not rs.response_started:
            self._fail(rs, answer_for_reset(code, started=False))
            return
        link = rs.down_link
        link.core.reset_stream(rs.down, ErrorCode.CANCEL)
        _record(rs, answer_for_reset(code, started=True))
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
        req, res = rs.request, rs.response
        if req.chunks or req.blocked_since is not None:  # most calls end with none
            self._discard(req, rs.down_link, rs.down, rs.up_link, rs)
        if res.chunks or res.blocked_since is not None:
            self._discard(res, rs.up_link, rs.up, rs.down_link, rs)
        rs.down.relay = None
        if rs.up is not None:
            rs.up.relay = None
        rs.replay = None

    # --------------------------------------------------------------- streams

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


def _record(rs: RelayStream, answer: Answer) -> None:
    """How the proxy (or the client) ended ``rs``, for metrics and the access log."""
    rs.status = answer.grpc_status
    rs.error = answer.message
