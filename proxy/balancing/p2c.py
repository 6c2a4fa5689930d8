"""Power of two choices: two endpoints drawn at random (by weight), the less
loaded one wins. nginx's ``random two least_conn``; Envoy's LEAST_REQUEST and
Linkerd's balancer work the same way. Cheaper than a full scan, and it avoids
the herd that "least of all" sends to one newly idle endpoint."""

from __future__ import annotations

import random
from collections.abc import Callable

from proxy.balancing.endpoint import Endpoint
from proxy.balancing.weighted_random import weighted_choice

# nginx retries the second draw this many times when it repeats the first.
_REDRAWS = 20


def two_choices(
    candidates: list[Endpoint],
    better: Callable[[Endpoint, Endpoint], bool],
    rand: random.Random | None = None,
) -> Endpoint:
    """``a`` unless ``better(b, a)``, for two distinct weighted draws a, b."""
    a = weighted_choice(candidates, rand)
    if len(candidates) == 1:
        return a
    b = a
    for _ in range(_REDRAWS):
        b = weighted_choice(candidates, rand)
        if b is not a:
            break
    else:  # weights so skewed the draws keep agreeing: take any other
        b = candidates[1] if candidates[0] is a else candidates[0]
    return b if better(b, a) else a


def fewer_streams(b: Endpoint, a: Endpoint) -> bool:
    """``b`` has fewer active streams than ``a``, relative to weight."""
    return b.state.active * a.weight < a.state.active * b.weight


class TwoChoicesLeastConn:
    __slots__ = ("rand",)

    def __init__(self, rand: random.Random | None = None) -> None:
        self.rand = rand

    def pick(self, candidates: list[Endpoint], ctx: object, now: float) -> Endpoint:
        return two_choices(candidates, fewer_streams, self.rand)
