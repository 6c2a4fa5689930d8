"""Upstream connections: multiplexed HTTP/2 connections per endpoint, opened
on demand and shared by every client connection (httpcore's pool model).
grpcs:// connections are kept apart, per (endpoint, TLS settings)."""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import TYPE_CHECKING

import trio

from proxy.balancing.endpoint import Endpoint
from proxy.config.model import Address, UpstreamTls
from proxy.http2.connection import Connection
from proxy.http2.events import Event
from proxy.http2.keepalive import TimerSettings
from proxy.relay.call import RelayStream
from proxy.relay.link import Link
from proxy.relay.relay import Relay
from proxy.runtime.io import LinkIO
from proxy.runtime.lifetime import LinkWatch, upstream_settings
from proxy.runtime.tls import HandshakeFailed, client_handshake

if TYPE_CHECKING:
    from proxy.http2.connection import Stream
    from proxy.runtime.health import Probe

log = logging.getLogger("grpc_proxy.upstream")


class EndpointLinks:
    __slots__ = (
        "endpoint",
        "links",
        "connecting",
        "waiters",
        "connect_timeout",
        "keepalive",
        "probes",
        "tls",
    )

    def __init__(self, endpoint: Endpoint, tls: UpstreamTls | None = None) -> None:
        self.endpoint = endpoint
        # grpcs: connections here speak TLS with these settings (the newest
        # equal settings: a reload's context, so new connections get new certs).
        self.tls = tls
        self.links: list[Link] = []
        self.connecting = 0
        self.waiters: deque[RelayStream | Probe] = deque()
        self.connect_timeout = 5.0
        self.keepalive: TimerSettings = upstream_settings(None, 10.0)
        # Health-check probes in flight, by stream (their stream.relay is None,
        # so the relay only returns their flow-control credit).
        self.probes: dict[Stream, Probe] = {}

    def opening(self) -> bool:
        """A connection is being made, or waits for the peer's SETTINGS."""
        return self.connecting > 0 or any(
            not lk.core.settings_received and not lk.core.closed for lk in self.links
        )


class Upstreams:
    """The relay's ``Connector``: finds or opens a link with stream capacity."""

    def __init__(self, relay: Relay, nursery: trio.Nursery) -> None:
        self.relay = relay
        self.nursery = nursery
        # Connections are shared by calls to one address with the same TLS
        # settings (None: plain h2c).
        self.by_endpoint: dict[tuple[Address, UpstreamTls | None], EndpointLinks] = {}
        relay.connector = self

    def acquire(self, endpoint: Endpoint, rs: RelayStream, connect_timeout: float) -> None:
        el = self._links(endpoint, rs.location.upstream_tls)
        el.endpoint = endpoint  # the settings of the call's snapshot (fail_timeout)
        el.connect_timeout = connect_timeout
        pool = rs.pool
        if (
            el.keepalive.keepalive_time != pool.keepalive_time
            or el.keepalive.keepalive_timeout != pool.keepalive_timeout
        ):
            el.keepalive = upstream_settings(pool.keepalive_time, pool.keepalive_timeout)
        for link in el.links:
            if link.core.can_open_stream():
                self.relay.attach(rs, link)
                return
        el.waiters.append(rs)
        self._grow(el)

    def _links(self, endpoint: Endpoint, tls: UpstreamTls | None) -> EndpointLinks:
        key = (endpoint.address, tls)
        el = self.by_endpoint.get(key)
        if el is None:
            el = self.by_endpoint[key] = EndpointLinks(endpoint, tls)
        elif el.tls is not tls:  # equal settings from a reloaded config
            el.tls = tls
        return el

    def probe(self, probe: Probe, connect_timeout: float, tls: UpstreamTls | None = None) -> None:
        """Run a health-check probe on an existing connection to its endpoint,
        or on a new one, like a call."""
        el = self._links(probe.endpoint, tls)
        if not el.links and not el.connecting:
            el.connect_timeout = connect_timeout
        for link in el.links:
            if link.core.can_open_stream():
                self._attach(el, probe, link)
                return
        el.waiters.append(probe)
        self._grow(el)

    def forget_probe(self, probe: Probe) -> None:
        if probe.stream is None:
            return
        for (address, _), el in self.by_endpoint.items():
            if address == probe.endpoint.address:
                el.probes.pop(probe.stream, None)

    def _attach(self, el: EndpointLinks, waiter: RelayStream | Probe, link: Link) -> None:
        if type(waiter) is RelayStream:
            self.relay.attach(waiter, link)
        else:
            stream = waiter.attach(link)
            if stream is not None:
                el.probes[stream] = waiter

    def _fail_waiters(self, el: EndpointLinks, reason: str) -> None:
        waiters = list(el.waiters)
        el.waiters.clear()
        for w in waiters:
            if type(w) is RelayStream:
                self.relay.connect_failed(w, el.endpoint, reason)
            else:
                w.fail(reason)
        self.relay.flush()

    @staticmethod
    def _probe_events(el: EndpointLinks, events: list[Event]) -> None:
        probes = el.probes
        for ev in events:
            stream: Stream | None = getattr(ev, "stream", None)
            if stream is None:
                continue
            probe = probes.get(stream)
            if probe is not None:
                probe.on_event(ev)
                if probe.done:
                    del probes[stream]

    def _grow(self, el: EndpointLinks) -> None:
        """Open one more connection for the waiters, unless one is on its way."""
        if el.waiters and not el.opening():
            el.connecting += 1
            self.nursery.start_soon(self._connect, el)

    async def _connect(self, el: EndpointLinks) -> None:
        endpoint = el.endpoint
        timeout = el.connect_timeout
        addr = endpoint.address
        tls = el.tls
        stream: trio.abc.Stream
        try:
            with trio.fail_after(timeout):
                stream = await trio.open_tcp_stream(addr.host, addr.port)
                if tls is not None:
                    try:
                        stream = await client_handshake(stream, tls.context, tls.name)
                    except BaseException:
                        await trio.aclose_forcefully(stream)
                        raise
        except (OSError, trio.TooSlowError, HandshakeFailed) as e:
            el.connecting -= 1
            if isinstance(e, HandshakeFailed):
                reason = str(e)
            else:
                reason = "connect timeout" if isinstance(e, trio.TooSlowError) else _os_reason(e)
            if isinstance(e, trio.TooSlowError) and self.relay.observer is not None:
                self.relay.observer.timed_out("connect")
            self._fail_waiters(el, reason)
            return
        el.connecting -= 1
        core = Connection(client=True, max_concurrent_streams=0)
        link = Link(core, endpoint=endpoint, peer=str(addr))
        relay = self.relay

        def on_events(lk: Link, events: list[Event]) -> None:
            relay.on_upstream_events(lk, events)
            if el.probes:
                self._probe_events(el, events)
            if el.waiters:  # SETTINGS arrived, streams ended, or a limit changed
                self._serve_waiters(el)

        io = LinkIO(link, stream, relay, on_events)
        el.links.append(link)
        log.debug("connected to upstream %s", addr)

        def on_dead(reason: str) -> None:
            # Fail its streams now (not after the close): a frozen peer may hold
            # the final flush for a while. Passive health counts it, streams or not.
            if link in el.links:
                el.links.remove(link)  # no new streams here
            idle = not link.core.streams
            relay.upstream_lost(link, reason)  # counts a failure when streams were open
            if idle:
                endpoint.record_failure(trio.current_time())
            relay.flush()

        watch = LinkWatch(link, io, relay, el.keepalive, on_dead)

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
                if watch.timers.s.keepalive_time:
                    nursery.start_soon(watch.run)
                await io.run(start)
                nursery.cancel_scope.cancel()
        except Exception:  # a bug met on one upstream connection ends that connection only
            log.exception("upstream connection to %s failed", addr)
            io.close_reason = io.close_reason or "internal error"
        finally:
            if link in el.links:
                el.links.remove(link)
            self.relay.upstream_lost(link, io.close_reason or "connection closed")
            for h2_stream, probe in list(el.probes.items()):
                if probe.link is link:
                    del el.probes[h2_stream]
                    probe.fail(f"connection lost: {io.close_reason or 'closed'}")
            self.relay.flush()
            log.debug("upstream connection to %s closed: %s", addr, io.close_reason)
            if el.waiters:
                if core.settings_received:
                    self._grow(el)
                elif not el.opening():  # it never worked: the waiters try elsewhere
                    self._fail_waiters(el, io.close_reason or "connection closed")

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
            self._attach(el, rs, link)


def _os_reason(e: OSError) -> str:
    """Why a connect failed, in a few words ("connection refused"). trio's
    ``open_tcp_stream`` raises a plain ``OSError("all attempts to connect to
    H:P failed")`` whose cause is a group of each attempt's error: the reason
    is in there (each one once, in order, when several addresses failed)."""
    cause = e.__cause__
    if isinstance(cause, BaseExceptionGroup):
        reasons: list[str] = []
        for sub in cause.exceptions:
            if isinstance(sub, OSError):
                reason = _os_reason(sub)
                if reason not in reasons:
                    reasons.append(reason)
        if reasons:
            return ", ".join(reasons)
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if e.errno and e.errno > 0:  # trio rewrites strerror: "Error connecting to (...): ..."
        return os.strerror(e.errno).lower()
    if e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__
