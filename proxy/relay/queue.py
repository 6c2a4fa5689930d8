"""Calls waiting for a ``max_conns`` slot: one bounded FIFO per upstream.

A call is queued when every endpoint it may use is at its cap and the
upstream has a ``queue_timeout``; it is dispatched again when a stream to that
upstream ends, or failed with UNAVAILABLE when its time is up.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from proxy.config.model import DEFAULT_QUEUE_SIZE

if TYPE_CHECKING:
    from proxy.relay.call import RelayStream


class WaitQueues:
    __slots__ = ("by_pool", "size", "limit")

    def __init__(self, limit: int = DEFAULT_QUEUE_SIZE) -> None:
        self.by_pool: dict[str, deque[RelayStream]] = {}
        self.size = 0  # calls queued over all upstreams: 0 keeps the hot path to one test
        self.limit = limit  # per upstream

    def push(self, rs: RelayStream) -> bool:
        """Queue ``rs`` (its ``queued_until`` set); False when the queue is full."""
        q = self.by_pool.setdefault(rs.pool.name, deque())
        if len(q) >= self.limit:
            return False
        q.append(rs)
        self.size += 1
        return True

    def pop(self, name: str) -> RelayStream | None:
        """The oldest live call waiting on upstream ``name``."""
        q = self.by_pool.get(name)
        while q:
            rs = q.popleft()
            self.size -= 1
            if not rs.done:
                return rs
        return None

    def waiting(self, name: str) -> int:
        q = self.by_pool.get(name)
        return len(q) if q else 0

    def expired(self, now: float) -> list[RelayStream]:
        """Remove and return the calls whose wait is over (done ones are dropped)."""
        out: list[RelayStream] = []
        for q in self.by_pool.values():
            if not q:
                continue
            keep = deque([rs for rs in q if not rs.done and rs.queued_until > now])
            out.extend([rs for rs in q if not rs.done and rs.queued_until <= now])
            self.size -= len(q) - len(keep)
            q.clear()
            q.extend(keep)
        return out
