"""Client connections: h2c with prior knowledge on every ``listen``, or h2
over TLS (ALPN h2) on a ``listen ... ssl``."""

from __future__ import annotations

import logging
import ssl

import trio

from proxy.config.model import DEFAULT_SSL_HANDSHAKE_TIMEOUT, Address, Server
from proxy.http2.connection import Connection
from proxy.http2.events import Event, Http1Received
from proxy.http2.keepalive import PingPolicy
from proxy.relay.link import Link
from proxy.relay.relay import Relay
from proxy.runtime.io import LinkIO
from proxy.runtime.lifetime import LinkWatch, client_settings
from proxy.runtime.listeners import ListenerSlot
from proxy.runtime.tls import HandshakeFailed, server_handshake
from proxy.security.access import ClientIdentity
from proxy.security.acl import parse_ip

log = logging.getLogger("grpc_proxy.downstream")

_HTTP1_BODY = b"This port speaks HTTP/2 (gRPC) only.\n"
HTTP1_REPLY = (
    b"HTTP/1.1 505 HTTP Version Not Supported\r\n"
    b"Content-Type: text/plain\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_HTTP1_BODY)).encode() + b"\r\n\r\n" + _HTTP1_BODY
)


def tls_context(server: Server, address: Address) -> ssl.SSLContext | None:
    """The TLS context for a connection accepted on ``address``, if its
    ``listen`` has ``ssl``."""
    if server.tls is None:
        return None
    for lst in server.listens:
        if lst.address == address and lst.ssl:
            context: ssl.SSLContext = server.tls.context  # built when the config loaded
            return context
    return None


class ClientHandler:
    """Serves the connections accepted on one listen address (``slot``)."""

    connections = 0  # open client connections in this process (a metrics gauge)

    def __init__(self, relay: Relay, slot: ListenerSlot) -> None:
        self.relay = relay
        self.slot = slot

    async def __call__(self, stream: trio.SocketStream) -> None:
        ClientHandler.connections += 1
        try:
            await self._serve(stream)
        except Exception:  # one client's trouble must never reach the listener
            log.exception("client connection failed")
        finally:
            ClientHandler.connections -= 1

    async def _serve(self, sock: trio.SocketStream) -> None:
        try:
            host, port = sock.socket.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:
            peer = "?"
        slot = self.slot
        server = slot.server  # the one in effect now: its TLS context (a reload's certs)
        stream: trio.abc.Stream = sock
        subject: str | None = None
        context = tls_context(server, slot.address)
        if context is not None:
            timeout = server.connection.header_timeout or DEFAULT_SSL_HANDSHAKE_TIMEOUT
            try:
                stream, subject = await server_handshake(sock, context, timeout)
            except HandshakeFailed as e:
                if self.relay.observer is not None:
                    self.relay.observer.protocol_error("tls_handshake")
                log.info("client %s: %s", peer, e)
                await trio.aclose_forcefully(sock)
                return
        core = Connection(
            client=False,
            max_concurrent_streams=server.http2_max_concurrent_streams,
            limits=server.http2,
        )
        conn = server.connection
        if conn.keepalive_min_time:
            core.ping_policy = PingPolicy(conn.keepalive_min_time, trio.current_time)
        link = Link(core, server=server, peer=peer)
        link.client = ClientIdentity(parse_ip(peer), subject)
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
        watch = LinkWatch(link, io, relay, client_settings(conn))
        slot.watches.add(watch)
        if slot.draining:  # accepted just as the listener closed
            watch.drain(slot.drain_deadline, "shutdown")
        log.debug("client %s connected", peer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch.run)
                await io.run()
                nursery.cancel_scope.cancel()
        finally:
            slot.watches.discard(watch)
            relay.client_lost(link)
            relay.flush()
            log.debug("client %s closed: %s", peer, io.close_reason)
