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
    __slots__ = ("endpoint", "links", "connecting", "waiters", "connect_timeout")

    def __init__(self, endpoint: EndpointState) -> None:
        self.endpoint = endpoint
        self.links: list[Link] = []
        self.connecting = 0
        self.waiters: deque[RelayStream] = deque()
        self.connect_timeout = 5.0

    def opening(self) -> bool:
        """A connection is being made, or waits for the peer's SETTINGS."""
        return self.connecting > 0 or any(
            not lk.core.settings_received and not lk.core.closed for lk in self.links)


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
            el = self.by_address[endpoint.address] = EndpointLinks(endpoint)
        el.connect_timeout = connect_timeout
        for link in el.links:
            if link.core.can_open_stream():
                self.relay.attach(rs, link)
                return
        el.waiters.append(rs)
        self._grow(el)

    def _grow(self, el: EndpointLinks) -> None:
        """Open one more connection for the waiters, unless one is on its way."""
        if el.waiters and not el.opening():
            el.connecting += 1
            self.nursery.start_soon(self._connect, el)

    async def _connect(self, el: EndpointLinks) -> None:
        endpoint = el.endpoint
        timeout = el.connect_timeout
        addr = endpoint.address
        try:
            with trio.fail_after(timeout):
                stream = await trio.open_tcp_stream(addr.host, addr.port)
        except (OSError, trio.TooSlowError) as e:
            el.connecting -= 1
            reason = "connect timeout" if isinstance(e, trio.TooSlowError) else _os_reason(e)
            if isinstance(e, trio.TooSlowError) and self.relay.observer is not None:
                self.relay.observer.timed_out("connect")
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
            if el.waiters:  # SETTINGS arrived, streams ended, or a limit changed
                self._serve_waiters(el)

        io = LinkIO(link, stream, relay, on_events)
        el.links.append(link)
        log.debug("connected to upstream %s", addr)

        async def settings_deadline() -> None:
            await trio.sleep(timeout)
            if not core.settings_received:
                if relay.observer is not None:
                    relay.observer.timed_out("connect")
                io.abort("no SETTINGS from upstream within connect_timeout")

        def start() -> None:
            core.initiate()
            self.relay.flush()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(settings_deadline)
                await io.run(start)
                nursery.cancel_scope.cancel()
        finally:
            el.links.remove(link)
            self.relay.upstream_lost(link, io.close_reason or "connection closed")
            self.relay.flush()
            log.debug("upstream connection to %s closed: %s", addr, io.close_reason)
            if el.waiters:
                if core.settings_received:
                    self._grow(el)
                elif not el.opening():  # it never worked: the waiters try elsewhere
                    waiters = list(el.waiters)
                    el.waiters.clear()
                    for rs in waiters:
                        relay.connect_failed(rs, endpoint, io.close_reason or "connection closed")
                    relay.flush()

    def _serve_waiters(self, el: EndpointLinks) -> None:
        while el.waiters:
            rs = el.waiters[0]
            if rs.done:
                el.waiters.popleft()
                continue
            link = next((lk for lk in el.links if lk.core.can_open_stream()), None)
            if link is None:
                self._grow(el)  # every connection is full
                return
            el.waiters.popleft()
            self.relay.attach(rs, link)


def _os_reason(e: OSError) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__
