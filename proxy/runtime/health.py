"""Active health checks at run time: one task per upstream with a
``health_check``, probing every endpoint of its current pool snapshot each
``interval`` over the proxy's own upstream connections (``Upstreams.probe``).

The decisions (what passes, when an endpoint goes out or comes back) are pure
and live in ``proxy.balancing.health``; this module only moves bytes and time.
Probes are not client calls: they never touch the relay's call accounting or
passive health (max_fails).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from proxy.balancing import health
from proxy.balancing.endpoint import Endpoint
from proxy.config.model import Config, HealthCheck, UpstreamTls
from proxy.http2.events import DataReceived, Event, HeadersReceived, StreamReset
from proxy.http2.frames import ErrorCode
from proxy.relay.link import Link
from proxy.relay.relay import Relay

if TYPE_CHECKING:
    from proxy.http2.connection import Stream
    from proxy.runtime.generation import Generation
    from proxy.runtime.upstream import Upstreams

log = logging.getLogger("grpc_proxy.health")


class Probe:
    """One Health/Check call on one endpoint. ``done`` is what the connector's
    waiter queue checks, as for a relayed call."""

    __slots__ = (
        "endpoint",
        "headers",
        "body",
        "stream",
        "link",
        "done",
        "finished",
        "response",
        "data",
        "trailers",
        "error",
        "relay",
    )

    def __init__(self, endpoint: Endpoint, service: str, relay: Relay) -> None:
        self.endpoint = endpoint
        self.headers = health.request_headers(str(endpoint.address))
        self.body = health.request_body(service)
        self.relay = relay
        self.stream: Stream | None = None
        self.link: Link | None = None
        self.done = False
        self.finished = trio.Event()
        self.response: list[tuple[bytes, bytes]] | None = None
        self.data = bytearray()
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.error = ""

    def attach(self, link: Link) -> Stream | None:
        """Open the probe's stream on ``link`` (which has room for it)."""
        if self.done:
            return None
        core = link.core
        stream = core.open_stream(self.headers, False)
        core.send_data(stream, self.body, True)  # tiny: within any initial window
        self.stream, self.link = stream, link
        self.relay.dirty.add(link)
        return stream

    def on_event(self, ev: Event) -> None:
        if type(ev) is HeadersReceived:
            if ev.trailers:
                self.trailers = list(ev.headers)
            else:
                self.response = list(ev.headers)
            if ev.end_stream:
                self.finish()
        elif type(ev) is DataReceived:
            if len(self.data) + len(ev.data) > health.MAX_BODY:
                self.fail("response too large")
                return
            self.data += ev.data
            if ev.end_stream:
                self.finish()
        elif type(ev) is StreamReset:
            self.fail(f"stream reset ({ev.code})")

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.error = health.verdict(self.response, bytes(self.data), self.trailers)
            self.finished.set()

    def fail(self, reason: str) -> None:
        if not self.done:
            self.done = True
            self.error = reason
            self.finished.set()

    def cancel(self) -> None:
        """Timed out: stop the stream (the connection stays, with its calls)."""
        self.fail(self.error or "timeout")
        stream, link = self.stream, self.link
        if stream is not None and link is not None and not stream.closed:
            link.core.reset_stream(stream, ErrorCode.CANCEL)
            self.relay.dirty.add(link)
            self.relay.flush()


async def check_endpoint(
    ep: Endpoint,
    check: HealthCheck,
    upstream: str,
    relay: Relay,
    upstreams: Upstreams,
    connect_timeout: float,
    tls: UpstreamTls | None = None,
) -> None:
    probe = Probe(ep, check.service, relay)
    upstreams.probe(probe, connect_timeout, tls)
    relay.flush()
    try:
        with trio.move_on_after(check.timeout):
            await probe.finished.wait()
    finally:
        # Also when a reload cancels this check mid-probe: no stream or
        # probe entry is left behind on the upstream connection.
        probe.cancel()  # unfinished: "timeout" and a stream reset; else a no-op
        upstreams.forget_probe(probe)
    if health.record(ep.state, not probe.error, check):
        if ep.state.healthy:
            log.warning("upstream %s: %s is healthy again", upstream, ep.address)
        else:
            log.warning("upstream %s: %s is unhealthy: %s", upstream, ep.address, probe.error)


async def run_health_checks(
    name: str,
    check: HealthCheck,
    relay: Relay,
    upstreams: Upstreams,
    tls: UpstreamTls | None = None,
) -> None:
    """Probe every endpoint of upstream ``name`` each ``interval``, in
    parallel, until the upstream leaves ``relay.pools``."""
    while True:
        pool = relay.pools.get(name)
        if pool is None:
            return
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for ep in pool.endpoints:
                if not ep.down:
                    nursery.start_soon(
                        check_endpoint, ep, check, name, relay, upstreams, pool.connect_timeout, tls
                    )
        await trio.sleep(max(0.0, check.interval - (trio.current_time() - started)))


def health_check_service(generation: Generation, nursery: trio.Nursery) -> None:
    """The per-config service (see proxy/runtime/generation.py): a reload
    restarts the checks with the new config; endpoint health is kept."""
    runtime = generation.runtime

    async def start() -> None:
        await generation.activated.wait()  # checks read the live pools
        start_health_checks(nursery, generation.config, runtime.relay, runtime.upstreams)

    nursery.start_soon(start)


def start_health_checks(
    nursery: trio.Nursery, config: Config, relay: Relay, upstreams: Upstreams
) -> None:
    """One checking task per upstream of ``config`` that has a health_check."""
    for name, up in config.upstreams.items():
        if up.health_check is not None:
            nursery.start_soon(
                run_health_checks, name, up.health_check, relay, upstreams, _tls_of(config, name)
            )


def _tls_of(config: Config, upstream: str) -> UpstreamTls | None:
    """grpcs:// upstreams are probed over TLS, with the settings of the first
    location that passes to them (so probes share the calls' connections)."""
    for server in config.servers:
        for loc in server.locations:
            if loc.upstream == upstream and loc.upstream_tls is not None:
                return loc.upstream_tls
    return None
