"""A new request: refused at once (wrong method or content-type, no route,
access denied, upstream gone), or made a call and handed to ``retry``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.grpc_timeout import parse_grpc_timeout
from proxy.http2.hpack_codec import HeaderBlock, HeaderList
from proxy.relay.call import RelayStream
from proxy.relay.retry import Retry
from proxy.security.access import check as check_access
from proxy.status import Answer, Failure, answer_for

if TYPE_CHECKING:
    from proxy.config.model import Location
    from proxy.http2.connection import Stream
    from proxy.http2.events import HeadersReceived
    from proxy.relay.link import Link

# (:path, :method, content-type, grpc-timeout) of a request.
RequestInfo = tuple[bytes, bytes, bytes, bytes]


class Routing(Retry):
    def _new_call(self, link: Link, ev: HeadersReceived) -> None:
        down = ev.stream
        headers = ev.headers
        # The fields routing reads, remembered on a HeaderBlock: a block the
        # decoder's cache hands out again is scanned once.
        info: RequestInfo | None = getattr(headers, "info", None)
        if info is None:
            info = _request_fields(headers)
            if type(headers) is HeaderBlock:
                headers.info = info
        path, method, ctype, timeout = info
        spath = path.decode("latin-1")
        location: Location | None = None
        refusal: Answer | None = None
        user: str | None = None
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
            self._refuse(link, down, spath, refusal or answer_for(Failure.NO_ROUTE, path=spath))
            return
        pool = self.pools.get(location.upstream)
        if pool is None:  # a connection draining after a reload that removed the upstream
            self._answer_client(
                link, down, answer_for(Failure.NO_ENDPOINT, upstream=location.upstream), False
            )
            self._close_client_stream(link, down)
            return
        now = self.now
        rs = RelayStream(link, down, spath, location, pool, headers, now)
        rs.user = user
        down.relay = rs
        rs.request.end = ev.end_stream
        self.active[rs] = None
        if timeout:
            seconds = parse_grpc_timeout(timeout)
            if seconds is not None:
                rs.deadline = now + seconds
                self.deadlines.push(rs)
        self._dispatch(rs)

    def _refuse(self, link: Link, down: Stream, path: str, refusal: Answer) -> None:
        """Answer a request the proxy will not route."""
        if self.observer is not None:
            self.observer.call_refused(link, path, refusal, self.now)
        self._answer_client(link, down, refusal, False)
        if refusal.http_status == 200:  # gRPC: a client still sending is stopped
            self._close_client_stream(link, down)


def _request_fields(headers: HeaderList) -> RequestInfo:
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
