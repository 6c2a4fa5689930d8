"""The relay's timers, all checked by ``tick(now)`` (the I/O layer calls it
about once a second): the proxy-side deadline from ``grpc-timeout``, the
max_conns queue timeout, the per-stream idle timeout (``grpc_read_timeout``:
no DATA either way) and the send timeout of a stream whose peer takes nothing
(``grpc_send_timeout``: a zero window or a full writer)."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from proxy.relay.call import DONE
from proxy.relay.endings import Endings
from proxy.status import Failure, answer_for

if TYPE_CHECKING:
    from proxy.relay.call import Pending, RelayStream


class Deadlines:
    """Calls by deadline, earliest first (a heap; ended calls are dropped
    when their time comes)."""

    __slots__ = ("heap", "seq")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, RelayStream]] = []
        self.seq = 0  # ties keep arrival order, and calls are never compared

    def push(self, rs: RelayStream) -> None:
        """``rs.deadline`` is set."""
        assert rs.deadline is not None
        self.seq += 1
        heapq.heappush(self.heap, (rs.deadline, self.seq, rs))

    def expired(self, now: float) -> list[RelayStream]:
        """Remove and return the calls whose deadline is ``now`` or earlier."""
        heap = self.heap
        out: list[RelayStream] = []
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[2])
        return out


class Timers(Endings):
    def tick(self, now: float) -> None:
        self.now = now
        self._expire_deadlines(now)
        if self.queues.size:
            for rs in self.queues.expired(now):
                self._fail(rs, answer_for(Failure.QUEUE_TIMEOUT, upstream=rs.pool.name))
        for rs in list(self.active):
            if rs.state is not DONE:
                self._check_idle(rs, now)

    def _expire_deadlines(self, now: float) -> None:
        for rs in self.deadlines.expired(now):
            if rs.state is not DONE:
                if self.observer is not None:
                    self.observer.timed_out("deadline")
                self._fail(rs, answer_for(Failure.DEADLINE))

    def _check_idle(self, rs: RelayStream, now: float) -> None:
        loc = rs.location
        if loc.read_timeout and now - rs.last_data >= loc.read_timeout:
            if self.observer is not None:
                self.observer.timed_out("read")
            self._fail(rs, answer_for(Failure.READ_TIMEOUT))
        elif loc.send_timeout and (
            _stalled(rs.request, now, loc.send_timeout)
            or _stalled(rs.response, now, loc.send_timeout)
        ):
            if self.observer is not None:
                self.observer.timed_out("send")
            self._fail(rs, answer_for(Failure.SEND_TIMEOUT))


def _stalled(p: Pending, now: float, timeout: float) -> bool:
    return p.blocked_since is not None and now - p.blocked_since >= timeout
