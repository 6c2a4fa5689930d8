"""One grpc.health.v1 Check of one endpoint, for ``grpc-proxy register
--health``: a fresh plaintext HTTP/2 connection driven by the proxy's own
HTTP/2 core, the probe's bytes and verdict from ``proxy.balancing.health``
(the same as the proxy's active health checks). No grpcio.
"""

from __future__ import annotations

import trio

from proxy.balancing import health
from proxy.config.units import parse_address
from proxy.http2.connection import Connection
from proxy.http2.events import (
    ConnectionFailed,
    DataReceived,
    Event,
    HeadersReceived,
    StreamReset,
)
from proxy.http2.hpack_codec import HeaderList

READ_SIZE = 65536


async def check(target: str, timeout: float, service: str = "") -> str:
    """``""`` if ``target`` (HOST:PORT) answers SERVING within ``timeout``
    seconds, else why not."""
    address = parse_address(target)
    with trio.move_on_after(timeout):
        try:
            return await _check(address.host, address.port, target, service)
        except OSError as e:
            return f"cannot connect: {e.strerror or e}"
    return f"no answer in {timeout:g}s"


async def _check(host: str, port: int, authority: str, service: str) -> str:
    sock = await trio.open_tcp_stream(host, port)
    async with sock:
        core = Connection(client=True)
        core.initiate()
        call: _Call | None = None
        while True:
            if call is None and core.can_open_stream():
                call = _Call(core, authority, service)
            out = core.take_output()
            if out:
                await sock.send_all(out)
            data = await sock.receive_some(READ_SIZE)
            if not data:
                return "connection closed"
            for ev in core.receive_data(data):
                if isinstance(ev, ConnectionFailed):
                    return f"HTTP/2 error: {ev.reason}"
                verdict = call.on_event(ev) if call is not None else None
                if verdict is not None:
                    return verdict


class _Call:
    """The Check call on ``core``: its stream, what came back."""

    def __init__(self, core: Connection, authority: str, service: str) -> None:
        self.core = core
        self.stream = core.open_stream(health.request_headers(authority), False)
        core.send_data(self.stream, health.request_body(service), True)
        self.response: HeaderList | None = None
        self.trailers: HeaderList | None = None
        self.body = bytearray()

    def on_event(self, ev: Event) -> str | None:
        """The verdict once the call is over ("" for SERVING), else None."""
        if getattr(ev, "stream", None) is not self.stream:
            return None
        if isinstance(ev, StreamReset):
            return f"stream reset ({ev.code})"
        if isinstance(ev, HeadersReceived):
            if ev.trailers:
                self.trailers = list(ev.headers)
            else:
                self.response = list(ev.headers)
            ended = ev.end_stream
        elif isinstance(ev, DataReceived):
            self.body += ev.data
            if len(self.body) > health.MAX_BODY:
                return "response too large"
            self.core.ack_data(self.stream, ev.flow_len)
            ended = ev.end_stream
        else:
            return None
        return health.verdict(self.response, bytes(self.body), self.trailers) if ended else None
