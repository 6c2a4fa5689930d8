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
        "max_conns",
        "healthy",
        "checks_failed",
        "checks_passed",
        "latency",
        "latency_at",
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
        self.max_conns = 0  # cap on active streams; 0 = none
        # Active health (health_check): out of rotation while False.
        self.healthy = True
        self.checks_failed = 0  # consecutive failed probes
        self.checks_passed = 0  # consecutive passed probes
        # least_time: peak-EWMA of response-header latency (s) and when last updated.
        self.latency = 0.0
        self.latency_at = 0.0

    def available(self, now: float) -> bool:
        """nginx's passive health: out after ``max_fails`` failures within
        ``fail_timeout``, tried again once ``fail_timeout`` has passed."""
        if self.down or not self.healthy:
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

    def snapshot(self) -> dict[str, object]:
        """What an admin page shows for this endpoint."""
        return {
            "address": str(self.address),
            "source": self.source,
            "weight": self.weight,
            "backup": self.backup,
            "down": self.down,
            "healthy": self.healthy,
            "active": self.active,
            "max_conns": self.max_conns,
            "fails": self.fails,
            "checks_failed": self.checks_failed,
            "latency": self.latency,
            "meta": dict(self.meta),
        }

    def __repr__(self) -> str:
        return f"EndpointState({self.address}, weight={self.weight}, fails={self.fails})"
