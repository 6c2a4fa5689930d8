"""nginx's smooth weighted round robin (ngx_http_upstream_get_peer).

Each pick adds every candidate's weight to its current weight, takes the
largest, and subtracts the total from the winner: weights 5,1,1 give
a a b a c a a, spread evenly rather than in bursts.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.balancing.endpoint import EndpointState


def pick_smooth_weighted(candidates: Iterable[EndpointState]) -> EndpointState | None:
    best: EndpointState | None = None
    total = 0
    for ep in candidates:
        ep.current_weight += ep.weight
        total += ep.weight
        if best is None or ep.current_weight > best.current_weight:
            best = ep
    if best is not None:
        best.current_weight -= total
    return best


class RoundRobin:
    """The default policy."""

    __slots__ = ()

    def pick(
        self, candidates: list[EndpointState], ctx: object, now: float
    ) -> EndpointState | None:
        return pick_smooth_weighted(candidates)
