"""nginx's ``random``: each call picks an endpoint at random, in proportion
to its weight. (Named so it does not shadow the standard ``random``.)"""

from __future__ import annotations

import random
from collections.abc import Sequence

from proxy.balancing.endpoint import Endpoint


def weighted_choice(candidates: Sequence[Endpoint], rand: random.Random | None = None) -> Endpoint:
    r = (rand or random).random()
    total = 0
    for ep in candidates:
        total += ep.weight
    point = r * total
    for ep in candidates:
        point -= ep.weight
        if point < 0:
            return ep
    return candidates[-1]  # rounding at the top end


class WeightedRandom:
    __slots__ = ("rand",)

    def __init__(self, rand: random.Random | None = None) -> None:
        self.rand = rand

    def pick(self, candidates: list[Endpoint], ctx: object, now: float) -> Endpoint:
        return weighted_choice(candidates, self.rand)
