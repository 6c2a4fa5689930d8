"""nginx's ``least_conn``: the endpoint with the fewest active streams
relative to its weight; ties go round robin (smooth, weighted), as nginx's
ngx_http_upstream_get_least_conn_peer."""

from __future__ import annotations

from proxy.balancing.endpoint import Endpoint
from proxy.balancing.round_robin import pick_smooth_weighted


def least_loaded(candidates: list[Endpoint]) -> list[Endpoint]:
    """The candidates with the lowest active/weight (compared without division)."""
    best = candidates[0]
    ties = [best]
    for ep in candidates[1:]:
        lhs = ep.state.active * best.weight
        rhs = best.state.active * ep.weight
        if lhs < rhs:
            best = ep
            ties = [ep]
        elif lhs == rhs:
            ties.append(ep)
    return ties


class LeastConn:
    __slots__ = ()

    def pick(self, candidates: list[Endpoint], ctx: object, now: float) -> Endpoint | None:
        ties = least_loaded(candidates)
        return ties[0] if len(ties) == 1 else pick_smooth_weighted(ties)
