"""Runtime state of one upstream endpoint: the one place that holds it.

Pool membership is an immutable snapshot (``pool.PoolSnapshot``); what changes
call by call (active streams, passive-health fails, the round-robin weight)
lives here, shared by every snapshot that lists the endpoint.
"""

from __future__ import annotations

from proxy.config.model import Address


class EndpointState:
    __slots__ = (
        "address",
        "weight",
        "backup",
        "down",
        "max_fails",
        "fail_timeout",
        "meta",
        "source",
        "fails",
        "failed_at",
        "active",
        "current_weight",
    )

    def __init__(
        self,
        address: Address,
        weight: int = 1,
        *,
        backup: bool = False,
        down: bool = False,
        max_fails: int = 1,
        fail_timeout: float = 10.0,
        meta: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.address = address
        self.weight = weight
        self.backup = backup
        self.down = down
        self.max_fails = max_fails
        self.fail_timeout = fail_timeout
        self.meta = meta
        self.source = "static"  # or "etcd": where the endpoint came from
        self.fails = 0
        self.failed_at = float("-inf")
        self.active = 0
        self.current_weight = 0

    def available(self, now: float) -> bool:
        """nginx's passive health: out after ``max_fails`` failures within
        ``fail_timeout``, tried again once ``fail_timeout`` has passed."""
        if self.down:
            return False
        return (
            self.max_fails == 0
            or self.fails < self.max_fails
            or now - self.failed_at >= self.fail_timeout
        )

    def record_failure(self, now: float) -> None:
        if now - self.failed_at >= self.fail_timeout:
            self.fails = 0  # failures older than fail_timeout do not add up
        self.fails += 1
        self.failed_at = now

    def record_success(self) -> None:
        self.fails = 0

    def __repr__(self) -> str:
        return f"EndpointState({self.address}, weight={self.weight}, fails={self.fails})"
