"""An upstream endpoint: its settings, frozen in a pool snapshot, and its
counters, shared by every snapshot that lists it.

``Endpoint`` is what a pool snapshot (``pool.PoolSnapshot``) holds and a call
picks: the settings of one ``server`` line (or etcd value) as they were when
the snapshot was built, immutable, so a reload's new weights reach calls only
with the new snapshot, and a reload that fails or a publish that is discarded
changes nothing that runs. ``Endpoint.state`` is the ``EndpointState``: what
changes call by call (active streams, passive-health fails, the round-robin
weight, active health, latency). The registry (``pool.Registry``) keeps one per
(upstream, address), so an endpoint that stays across a rebuild keeps them.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field

from proxy.config.model import Address


class EndpointState:
    """The counters of one endpoint, shared by the snapshots that list it."""

    __slots__ = (
        "fails",
        "failed_at",
        "active",
        "current_weight",
        "healthy",
        "checks_failed",
        "checks_passed",
        "latency",
        "latency_at",
    )

    def __init__(self) -> None:
        self.fails = 0
        self.failed_at = float("-inf")
        self.active = 0
        # Smooth weighted round robin: shared, so a rebuild (a reload, each
        # etcd publish) does not restart the sequence at the first endpoint.
        self.current_weight = 0
        # Active health (health_check): out of rotation while False.
        self.healthy = True
        self.checks_failed = 0  # consecutive failed probes
        self.checks_passed = 0  # consecutive passed probes
        # least_time: peak-EWMA of response-header latency (s) and when last updated.
        self.latency = 0.0
        self.latency_at = 0.0

    def __repr__(self) -> str:
        return f"EndpointState(active={self.active}, fails={self.fails}, healthy={self.healthy})"


@dataclass(frozen=True, slots=True, eq=False)
class Endpoint:
    """One endpoint as a pool snapshot lists it. Compared by identity: a call
    excludes the endpoints it tried within its own snapshot."""

    address: Address
    weight: int = 1
    _: KW_ONLY
    backup: bool = False
    down: bool = False
    max_fails: int = 1
    fail_timeout: float = 10.0
    meta: tuple[tuple[str, str], ...] = ()
    max_conns: int = 0  # cap on active streams; 0 = none
    source: str = "static"  # or "etcd": where the endpoint came from
    state: EndpointState = field(default_factory=EndpointState)

    def available(self, now: float) -> bool:
        """nginx's passive health: out after ``max_fails`` failures within
        ``fail_timeout``, tried again once ``fail_timeout`` has passed."""
        st = self.state
        if self.down or not st.healthy:
            return False
        return (
            self.max_fails == 0
            or st.fails < self.max_fails
            or now - st.failed_at >= self.fail_timeout
        )

    def record_failure(self, now: float) -> None:
        st = self.state
        if now - st.failed_at >= self.fail_timeout:
            st.fails = 0  # failures older than fail_timeout do not add up
        st.fails += 1
        st.failed_at = now

    def record_success(self) -> None:
        self.state.fails = 0

    def snapshot(self) -> dict[str, object]:
        """What an admin page shows for this endpoint."""
        st = self.state
        return {
            "address": str(self.address),
            "source": self.source,
            "weight": self.weight,
            "backup": self.backup,
            "down": self.down,
            "healthy": st.healthy,
            "active": st.active,
            "max_conns": self.max_conns,
            "fails": st.fails,
            "checks_failed": st.checks_failed,
            "latency": st.latency,
            "meta": dict(self.meta),
        }

    def __repr__(self) -> str:
        return f"Endpoint({self.address}, weight={self.weight}, fails={self.state.fails})"
