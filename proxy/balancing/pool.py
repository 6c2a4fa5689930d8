"""An upstream's endpoints as an immutable snapshot, and how a call picks one."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import Enum

from proxy.balancing.endpoint import Endpoint, EndpointState
from proxy.balancing.policy import CONTEXT_KINDS, PickContext, Policy, make_policy
from proxy.balancing.round_robin import RoundRobin
from proxy.balancing.subset import labelled, request_value
from proxy.config.model import (
    DEFAULT_QUEUE_TIMEOUT,
    ROUND_ROBIN,
    Address,
    Balance,
    Upstream,
    UpstreamServer,
)


class Miss(Enum):
    """Why ``pick`` found nothing."""

    NO_ENDPOINT = "no_endpoint"  # none available (down, unhealthy, failed, tried)
    SUBSET = "subset"  # no endpoint carries the requested label
    FULL = "full"  # some are available, but each at its max_conns


@dataclass(frozen=True, slots=True)
class Group:
    """Endpoints a call may use, primaries before backups, with their policies."""

    primaries: tuple[Endpoint, ...]
    backups: tuple[Endpoint, ...]
    policies: tuple[Policy, Policy]

    @classmethod
    def of(
        cls,
        primaries: tuple[Endpoint, ...],
        backups: tuple[Endpoint, ...],
        balance: Balance,
    ) -> Group:
        return cls(
            primaries, backups, (make_policy(balance, primaries), make_policy(balance, backups))
        )


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    name: str
    primaries: tuple[Endpoint, ...]
    backups: tuple[Endpoint, ...]
    connect_timeout: float
    balance: Balance = ROUND_ROBIN
    subset: str | None = None  # request metadata key for subset routing
    subset_fallback: bool = False
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT
    keepalive_time: float | None = None  # PING upstream connections silent this long
    keepalive_timeout: float = 10.0
    # Derived once per snapshot (__post_init__):
    capped: bool = field(init=False, compare=False)  # some endpoint has max_conns
    needs_context: bool = field(init=False, compare=False)  # pick reads the request
    timed: bool = field(init=False, compare=False)  # the relay records latency (least_time)
    group: Group = field(init=False, compare=False, repr=False)
    _subsets: dict[bytes, Group] = field(init=False, compare=False, repr=False)
    _subset_key: bytes = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        init = object.__setattr__
        if self.balance.kind == "round_robin":  # the default stays as cheap as it was
            rr = RoundRobin()
            init(self, "group", Group(self.primaries, self.backups, (rr, rr)))
        else:
            init(self, "group", Group.of(self.primaries, self.backups, self.balance))
        init(self, "capped", any(ep.max_conns for ep in self.endpoints))
        init(self, "needs_context", self.subset is not None or self.balance.kind in CONTEXT_KINDS)
        init(self, "timed", self.balance.kind == "least_time")
        # Only values some endpoint carries are cached: bounded by the labels.
        init(self, "_subsets", {})
        init(self, "_subset_key", (self.subset or "").encode())

    def pick(
        self, now: float, exclude: Collection[Endpoint] = (), ctx: PickContext | None = None
    ) -> Endpoint | None:
        """Primaries first; backups only when no primary can take the call
        (nginx). ``ctx`` is needed when ``needs_context``."""
        group: Group | None = self.group
        if self.subset is not None and ctx is not None:
            group = self._subset_group(ctx) or (group if self.subset_fallback else None)
        if group is None:
            return None
        capped = self.capped
        candidates = [
            ep
            for ep in group.primaries
            if ep not in exclude
            and ep.available(now)
            and not (capped and ep.max_conns and ep.state.active >= ep.max_conns)
        ]
        if candidates:
            return group.policies[0].pick(candidates, ctx, now)
        if group.backups:
            candidates = [
                ep
                for ep in group.backups
                if ep not in exclude
                and ep.available(now)
                and not (capped and ep.max_conns and ep.state.active >= ep.max_conns)
            ]
            if candidates:
                return group.policies[1].pick(candidates, ctx, now)
        return None

    def miss(
        self, now: float, exclude: Collection[Endpoint] = (), ctx: PickContext | None = None
    ) -> tuple[Miss, str]:
        """Why ``pick`` just returned None; for SUBSET also "KEY=VALUE"."""
        group = self.group
        if self.subset is not None and ctx is not None:
            sub = self._subset_group(ctx)
            if sub is None and not self.subset_fallback:
                value = request_value(ctx.headers, self._subset_key) or b""
                return Miss.SUBSET, f"{self.subset}={value.decode('latin-1')}"
            group = sub or group
        if self.capped and any(
            ep not in exclude and ep.available(now) for ep in group.primaries + group.backups
        ):
            return Miss.FULL, ""
        return Miss.NO_ENDPOINT, ""

    def _subset_group(self, ctx: PickContext) -> Group | None:
        """The request's subset; the whole pool when the request names none;
        None when no endpoint carries the requested label."""
        value = request_value(ctx.headers, self._subset_key)
        if value is None:
            return self.group
        group = self._subsets.get(value)
        if group is None:
            key, text = self.subset or "", value.decode("latin-1")
            primaries = labelled(self.primaries, key, text)
            backups = labelled(self.backups, key, text)
            if not primaries and not backups:
                return None
            group = Group.of(primaries, backups, self.balance)
            self._subsets[value] = group
        return group

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
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
    plus whatever discovery found). Each endpoint's settings are the
    snapshot's own (``Endpoint``, frozen): snapshots already running keep
    theirs until this one is swapped in. ``registry`` is the one place
    endpoint counters live (``EndpointState``), keyed by (upstream name,
    address): an endpoint that stays across a rebuild keeps its fails, counts
    and health. ``discovered`` servers follow ``servers`` with source "etcd"."""
    primaries: list[Endpoint] = []
    backups: list[Endpoint] = []
    for srv, src in [*((s, source) for s in servers), *((s, "etcd") for s in discovered)]:
        state = registry.get((upstream.name, srv.address))
        if state is None:
            state = registry[(upstream.name, srv.address)] = EndpointState()
        ep = Endpoint(
            srv.address,
            srv.weight,
            backup=srv.backup,
            down=srv.down,
            max_fails=srv.max_fails,
            fail_timeout=srv.fail_timeout,
            meta=srv.meta,
            max_conns=srv.max_conns,
            source=src,
            state=state,
        )
        (backups if srv.backup else primaries).append(ep)
    return PoolSnapshot(
        upstream.name,
        tuple(primaries),
        tuple(backups),
        upstream.connect_timeout,
        upstream.balance,
        upstream.subset,
        upstream.subset_fallback,
        upstream.queue_timeout,
        upstream.keepalive_time,
        upstream.keepalive_timeout,
    )


def build_pools(upstreams: dict[str, Upstream], registry: Registry) -> dict[str, PoolSnapshot]:
    """Snapshots for every upstream of a config, from its static servers."""
    return {name: build_pool(up, up.servers, registry) for name, up in upstreams.items()}
