"""Client connections: h2c with prior knowledge on every ``listen``."""

from __future__ import annotations

import logging

import trio

from proxy.config.model import Server
from proxy.http2.connection import Connection
from proxy.http2.events import Event, Http1Received
from proxy.relay.link import Link
from proxy.relay.relay import Relay
from proxy.runtime.io import LinkIO

log = logging.getLogger("grpc_proxy.downstream")

_HTTP1_BODY = b"This port speaks HTTP/2 (gRPC) only.\n"
HTTP1_REPLY = (
    b"HTTP/1.1 505 HTTP Version Not Supported\r\n"
    b"Content-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_HTTP1_BODY)).encode() + b"\r\n\r\n" + _HTTP1_BODY
)


class ClientHandler:
    connections = 0  # open client connections in this process (a metrics gauge)

    def __init__(self, relay: Relay, server: Server) -> None:
        self.relay = relay
        self.server = server

    async def __call__(self, stream: trio.SocketStream) -> None:
        ClientHandler.connections += 1
        try:
            await self._serve(stream)
        except Exception:  # one client's trouble must never reach the listener
            log.exception("client connection failed")
        finally:
            ClientHandler.connections -= 1

    async def _serve(self, stream: trio.SocketStream) -> None:
        try:
            host, port = stream.socket.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:
            peer = "?"
        core = Connection(
            client=False, max_concurrent_streams=self.server.http2_max_concurrent_streams
        )
        link = Link(core, server=self.server, peer=peer)
        relay = self.relay

        def on_events(lk: Link, events: list[Event]) -> None:
            if type(events[0]) is Http1Received:
                if relay.observer is not None:
                    relay.observer.protocol_error("http1")
                core.out.append(HTTP1_REPLY)
                core.out_size += len(HTTP1_REPLY)
                return
            relay.on_client_events(lk, events)

        io = LinkIO(link, stream, relay, on_events)
        try:
            await io.run()
        finally:
            relay.client_lost(link)
            relay.flush()
            log.debug("client %s closed: %s", peer, io.close_reason)
