"""An upstream's endpoints as an immutable snapshot, and how a call picks one."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from proxy.balancing.endpoint import EndpointState
from proxy.balancing.round_robin import pick_smooth_weighted
from proxy.config.model import Address, Upstream


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    name: str
    primaries: tuple[EndpointState, ...]
    backups: tuple[EndpointState, ...]
    connect_timeout: float

    def pick(self, now: float, exclude: Collection[EndpointState] = ()) -> EndpointState | None:
        """Primaries first; backups only when no primary is available (nginx)."""
        for group in (self.primaries, self.backups):
            candidates = [ep for ep in group if ep not in exclude and ep.available(now)]
            if candidates:
                return pick_smooth_weighted(candidates)
        return None

    @property
    def endpoints(self) -> tuple[EndpointState, ...]:
        return self.primaries + self.backups


def build_pools(
    upstreams: dict[str, Upstream],
    registry: dict[tuple[str, Address], EndpointState],
) -> dict[str, PoolSnapshot]:
    """Snapshots for every upstream of a config. ``registry`` keeps endpoint
    state across reloads: an endpoint that stays keeps its fails and counts."""
    pools: dict[str, PoolSnapshot] = {}
    for name, up in upstreams.items():
        primaries: list[EndpointState] = []
        backups: list[EndpointState] = []
        for srv in up.servers:
            ep = registry.get((name, srv.address))
            if ep is None:
                ep = EndpointState(srv.address)
                registry[(name, srv.address)] = ep
            ep.weight = srv.weight
            ep.backup = srv.backup
            ep.down = srv.down
            ep.max_fails = srv.max_fails
            ep.fail_timeout = srv.fail_timeout
            ep.meta = srv.meta
            (backups if srv.backup else primaries).append(ep)
        pools[name] = PoolSnapshot(name, tuple(primaries), tuple(backups), up.connect_timeout)
    return pools
