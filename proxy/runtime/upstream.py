"""Upstream connections: multiplexed HTTP/2 connections per endpoint, opened
on demand and shared by every client connection (httpcore's pool model)."""

from __future__ import annotations

import logging
from collections import deque

import trio

from proxy.balancing.endpoint import EndpointState
from proxy.config.model import Address
from proxy.http2.connection import Connection
from proxy.relay.link import Link
from proxy.relay.relay import Relay
from proxy.relay.stream import RelayStream
from proxy.runtime.io import LinkIO

log = logging.getLogger("grpc_proxy.upstream")


class EndpointLinks:
    __slots__ = ("links", "connecting", "waiters")

    def __init__(self) -> None:
        self.links: list[Link] = []
        self.connecting = 0
        self.waiters: deque[RelayStream] = deque()


class Upstreams:
    """The relay's ``Connector``: finds or opens a link with stream capacity."""

    def __init__(self, relay: Relay, nursery: trio.Nursery) -> None:
        self.relay = relay
        self.nursery = nursery
        self.by_address: dict[Address, EndpointLinks] = {}
        relay.connector = self

    def acquire(self, endpoint: EndpointState, rs: RelayStream, connect_timeout: float) -> None:
        el = self.by_address.get(endpoint.address)
        if el is None:
            el = self.by_address[endpoint.address] = EndpointLinks()
        for link in el.links:
            if link.core.can_open_stream():
                self.relay.attach(rs, link)
                return
        el.waiters.append(rs)
        if el.connecting == 0:
            el.connecting += 1
            self.nursery.start_soon(self._connect, endpoint, el, connect_timeout)

    async def _connect(self, endpoint: EndpointState, el: EndpointLinks, timeout: float) -> None:
        addr = endpoint.address
        try:
            with trio.fail_after(timeout):
                stream = await trio.open_tcp_stream(addr.host, addr.port)
        except (OSError, trio.TooSlowError) as e:
            el.connecting -= 1
            reason = "connect timeout" if isinstance(e, trio.TooSlowError) else _os_reason(e)
            waiters = list(el.waiters)
            el.waiters.clear()
            for rs in waiters:
                self.relay.connect_failed(rs, endpoint, reason)
            self.relay.flush()
            return
        el.connecting -= 1
        core = Connection(client=True, max_concurrent_streams=0)
        link = Link(core, endpoint=endpoint, peer=str(addr))
        relay = self.relay

        def on_events(lk: Link, events: list) -> None:
            relay.on_upstream_events(lk, events)
            if el.waiters:  # streams may have ended or SETTINGS raised the limit
                self._serve_waiters(endpoint, el)

        io = LinkIO(link, stream, relay, on_events)
        el.links.append(link)
        log.debug("connected to upstream %s", addr)

        def start() -> None:
            core.initiate()
            self._serve_waiters(endpoint, el)
            self.relay.flush()

        try:
            await io.run(start)
        finally:
            el.links.remove(link)
            self.relay.upstream_lost(link, io.close_reason or "connection closed")
            self.relay.flush()
            log.debug("upstream connection to %s closed: %s", addr, io.close_reason)
            if el.waiters and el.connecting == 0:
                el.connecting += 1
                self.nursery.start_soon(self._connect, endpoint, el, timeout)

    def _serve_waiters(self, endpoint: EndpointState, el: EndpointLinks) -> None:
        while el.waiters:
            rs = el.waiters[0]
            if rs.done:
                el.waiters.popleft()
                continue
            link = next((lk for lk in el.links if lk.core.can_open_stream()), None)
            if link is None:
                break
            el.waiters.popleft()
            self.relay.attach(rs, link)


def _os_reason(e: OSError) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__
