"""One grpc.health.v1 Check of one endpoint, for ``grpc-proxy register
--health``: a fresh plaintext HTTP/2 connection driven by the proxy's own
HTTP/2 core, the probe's bytes and verdict from ``proxy.balancing.health``
(the same as the proxy's active health checks). No grpcio.
"""

from __future__ import annotations

import trio

from proxy.balancing import health
from proxy.config.units import parse_address
from proxy.http2.connection import Connection, Stream
from proxy.http2.events import (
    ConnectionFailed,
    DataReceived,
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
        stream: Stream | None = None
        response: HeaderList | None = None
        trailers: HeaderList | None = None
        body = bytearray()
        while True:
            if stream is None and core.can_open_stream():
                stream = core.open_stream(health.request_headers(authority), False)
                core.send_data(stream, health.request_body(service), True)
            out = core.take_output()
            if out:
                await sock.send_all(out)
            data = await sock.receive_some(READ_SIZE)
            if not data:
                return "connection closed"
            for ev in core.receive_data(data):
                if isinstance(ev, ConnectionFailed):
                    return f"HTTP/2 error: {ev.reason}"
                if stream is None or not _of(ev, stream):
                    continue
                if isinstance(ev, StreamReset):
                    return f"stream reset ({ev.code})"
                ended = False
                if isinstance(ev, HeadersReceived):
                    if ev.trailers:
                        trailers = list(ev.headers)
                    else:
                        response = list(ev.headers)
                    ended = ev.end_stream
                elif isinstance(ev, DataReceived):
                    body += ev.data
                    if len(body) > health.MAX_BODY:
                        return "response too large"
                    core.ack_data(stream, ev.flow_len)
                    ended = ev.end_stream
                if ended:
                    return health.verdict(response, bytes(body), trailers)


def _of(ev: object, stream: Stream) -> bool:
    return getattr(ev, "stream", None) is stream
