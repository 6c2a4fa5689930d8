"""nginx's smooth weighted round robin (ngx_http_upstream_get_peer).

Each pick adds every candidate's weight to its current weight, takes the
largest, and subtracts the total from the winner: weights 5,1,1 give
a a b a c a a, spread evenly rather than in bursts.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.balancing.endpoint import Endpoint


def pick_smooth_weighted(candidates: Iterable[Endpoint]) -> Endpoint | None:
    best: Endpoint | None = None
    best_weight = 0
    total = 0
    for ep in candidates:
        st = ep.state
        weight = ep.weight
        current = st.current_weight = st.current_weight + weight
        total += weight
        if best is None or current > best_weight:
            best, best_weight = ep, current
    if best is not None:
        best.state.current_weight -= total
    return best


class RoundRobin:
    """The default policy."""

    __slots__ = ()

    def pick(self, candidates: list[Endpoint], ctx: object, now: float) -> Endpoint | None:
        return pick_smooth_weighted(candidates)
