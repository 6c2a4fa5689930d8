"""An upstream's endpoints as an immutable snapshot, and how a call picks one."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from proxy.balancing.endpoint import EndpointState
from proxy.balancing.round_robin import pick_smooth_weighted
from proxy.config.model import Address, Upstream, UpstreamServer


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


Registry = dict[tuple[str, Address], EndpointState]


def build_pool(
    upstream: Upstream,
    servers: Sequence[UpstreamServer],
    registry: Registry,
    source: str = "static",
    discovered: Sequence[UpstreamServer] = (),
) -> PoolSnapshot:
    """One upstream's snapshot over ``servers`` (its static ``server`` lines,
    plus whatever discovery found). ``registry`` is the one place endpoint
    state lives, keyed by (upstream name, address): an endpoint that stays
    across a rebuild keeps its fails, counts and health. ``discovered``
    servers follow ``servers`` with source "etcd"."""
    primaries: list[EndpointState] = []
    backups: list[EndpointState] = []
    for srv, src in [*((s, source) for s in servers), *((s, "etcd") for s in discovered)]:
        ep = registry.get((upstream.name, srv.address))
        if ep is None:
            ep = EndpointState(srv.address)
            registry[(upstream.name, srv.address)] = ep
        ep.weight = srv.weight
        ep.backup = srv.backup
        ep.down = srv.down
        ep.max_fails = srv.max_fails
        ep.fail_timeout = srv.fail_timeout
        ep.meta = srv.meta
        ep.source = src
        (backups if srv.backup else primaries).append(ep)
    return PoolSnapshot(upstream.name, tuple(primaries), tuple(backups), upstream.connect_timeout)


def build_pools(upstreams: dict[str, Upstream], registry: Registry) -> dict[str, PoolSnapshot]:
    """Snapshots for every upstream of a config, from its static servers."""
    return {name: build_pool(up, up.servers, registry) for name, up in upstreams.items()}
