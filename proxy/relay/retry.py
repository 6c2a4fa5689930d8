"""An endpoint for each call, and another when the first one certainly never
processed it: the pick (within ``next_upstream_tries``), the max_conns queue,
the connector that finds the call a stream, connect failures, and the retry
after a REFUSED_STREAM (or a GOAWAY below the stream) with the request bytes
replayed."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from proxy.balancing.policy import PickContext
from proxy.balancing.pool import Miss
from proxy.relay.call import DONE
from proxy.relay.pump import Pump
from proxy.status import Answer, Failure, answer_for

if TYPE_CHECKING:
    from proxy.balancing.endpoint import Endpoint
    from proxy.relay.call import RelayStream
    from proxy.relay.link import Link

log = logging.getLogger("grpc_proxy.relay")


class Connector(Protocol):
    def acquire(self, endpoint: Endpoint, rs: RelayStream, connect_timeout: float) -> None:
        """Call ``relay.attach(rs, link)`` now or later with a link that can
        open a stream, or ``relay.connect_failed(rs, endpoint, reason)``."""


class Retry(Pump):
    def _dispatch(self, rs: RelayStream) -> None:
        """Pick an endpoint not tried yet and ask for a stream on it."""
        tries = rs.location.next_upstream_tries
        ep = None
        pool = rs.pool
        ctx = (
            PickContext(rs.down_link.peer, rs.request_headers, rs.path)
            if pool.needs_context
            else None
        )
        if not tries or len(rs.tried) < tries:
            ep = pool.pick(self.now, rs.tried, ctx)
            if ep is None and (pool.primaries or pool.backups) and self._no_pick(rs, ctx):
                return
        if ep is None:
            self._fail(rs, _no_endpoint(rs))
            return
        if (rs.tried or rs.refusals) and self.observer is not None:
            self.observer.retried(rs)
        rs.connecting(ep, self.now)
        ep.state.active += 1
        timeout = rs.location.connect_timeout or rs.pool.connect_timeout
        assert self.connector is not None
        self.connector.acquire(ep, rs, timeout)

    def _no_pick(self, rs: RelayStream, ctx: PickContext | None) -> bool:
        """The pool had no endpoint for ``rs``: True if handled here (a subset
        miss, or every endpoint at max_conns: queued or failed)."""
        pool = rs.pool
        if not pool.needs_context and not pool.capped:
            return False
        miss, detail = pool.miss(self.now, rs.tried, ctx)
        if miss is Miss.SUBSET:
            self._fail(rs, answer_for(Failure.SUBSET_MISS, subset=detail))
        elif miss is Miss.FULL:
            if rs.queued_until == 0.0:
                rs.queued_until = self.now + pool.queue_timeout
            if rs.queued_until <= self.now or not self.queues.push(rs):
                self._fail(rs, answer_for(Failure.MAX_CONNS, upstream=pool.name))
            else:
                rs.queued()
        else:
            return False
        return True

    def attach(self, rs: RelayStream, link: Link) -> None:
        """An upstream link has room for ``rs``: open its stream there."""
        if rs.state is DONE:
            return
        self.now = self.clock()
        req = rs.request
        end = req.end and not req.chunks and req.trailers is None and not rs.replay_size
        up = link.core.open_stream(rs.request_headers, end)
        up.relay = rs
        rs.streaming(link, up)
        if end:
            req.end_sent = True
        elif rs.replay_size:
            rs.take_replay()  # a retry: what the failed attempt sent goes first
        self.dirty.add(link)
        if req.chunks or req.end or req.trailers is not None:
            self._pump_request(rs)

    def connect_failed(self, rs: RelayStream, endpoint: Endpoint, reason: str) -> None:
        self.now = self.clock()
        endpoint.record_failure(self.now)
        self._release_endpoint(rs)
        if rs.state is DONE:
            return
        rs.connect_failed(f"{endpoint.address}: {reason}")
        log.warning("upstream %s: %s", endpoint.address, reason)
        self._dispatch(rs)

    def _retry_refused(self, rs: RelayStream) -> None:
        """The upstream refused ``rs`` unprocessed (``rs.retryable()``): again."""
        rs.rewind_for_retry()
        self._release_endpoint(rs)
        self._dispatch(rs)

    def _release_endpoint(self, rs: RelayStream) -> None:
        ep = rs.endpoint
        if ep is not None:
            ep.state.active -= 1
            rs.endpoint = None
            if self.queues.size and ep.max_conns:
                self._serve_queue(rs.pool.name)

    def _serve_queue(self, name: str) -> None:
        """A slot freed in upstream ``name``: dispatch queued calls until one
        takes it (a call that cannot use it goes back to the queue's end)."""
        for _ in range(self.queues.waiting(name)):
            rs = self.queues.pop(name)
            if rs is None:
                return
            rs.dequeued()
            self._dispatch(rs)
            if rs.endpoint is not None or rs.state is DONE:
                return


def _no_endpoint(rs: RelayStream) -> Answer:
    """Why ``rs`` has nowhere (more) to go: the last connect error, an empty
    pool, or no endpoint available in it."""
    pool = rs.pool
    if rs.last_error:
        return answer_for(Failure.CONNECT_FAILED, detail=rs.last_error)
    if not pool.primaries and not pool.backups:
        return answer_for(Failure.NO_SERVERS, upstream=pool.name)
    return answer_for(Failure.NO_ENDPOINT, upstream=pool.name)
