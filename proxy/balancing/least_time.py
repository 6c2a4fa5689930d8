"""``least_time``: peak-EWMA of response-header latency with two choices, as
Finagle's and Linkerd's default balancer.

Each endpoint keeps an exponentially weighted moving average of the time from
dispatch to the response headers. A latency above the average replaces it at
once (the "peak"), so a slowing endpoint is avoided immediately; lower ones
pull it down with weight that grows with the time since the last sample. The
average also decays towards zero while no sample comes, so an endpoint that
was slow is tried again after a while. An endpoint's cost is its average
times (active streams + 1), over its weight; of two random candidates the
cheaper one wins.
"""

from __future__ import annotations

import math
import random

from proxy.balancing.endpoint import EndpointState
from proxy.balancing.p2c import two_choices

DECAY = 10.0  # seconds: Linkerd's and Finagle's default decay time
# An endpoint with no sample yet that already has a call in flight: keep it
# to one call until it answers (Finagle's penalty).
PENALTY = 1e6


def observe(ep: EndpointState, rtt: float, now: float) -> None:
    """Record one response-header latency ``rtt`` (s) seen at ``now``."""
    if rtt > ep.latency:
        ep.latency = rtt
    else:
        w = math.exp(-max(now - ep.latency_at, 0.0) / DECAY)
        ep.latency = ep.latency * w + rtt * (1.0 - w)
    ep.latency_at = now


def cost(ep: EndpointState, now: float) -> float:
    latency = ep.latency
    if latency == 0.0:
        return PENALTY + ep.active if ep.active else 0.0
    age = now - ep.latency_at
    if age > 0.0:
        latency *= math.exp(-age / DECAY)
    return latency * (ep.active + 1) / ep.weight


class LeastTime:
    __slots__ = ("rand",)

    def __init__(self, rand: random.Random | None = None) -> None:
        self.rand = rand

    def pick(self, candidates: list[EndpointState], ctx: object, now: float) -> EndpointState:
        return two_choices(candidates, lambda b, a: cost(b, now) < cost(a, now), self.rand)
