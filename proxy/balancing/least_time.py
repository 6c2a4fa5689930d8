"""``least_time``: peak-EWMA of response-header latency with two choices, as
Finagle's and Linkerd's default balancer.

Each endpoint keeps an exponentially weighted moving average of the time from
dispatch to the response headers. A latency above the average replaces it at
once (the "peak"), so a slowing endpoint is avoided immediately; lower ones
pull it down with weight that grows with the time since the last sample. The
average also decays towards zero while no sample comes, so an endpoint that
was slow is tried again after a while.

Of two random candidates the cheaper one wins. Finagle's cost, latency x
(active + 1), fits a server that works one call at a time; gRPC backends run
calls concurrently and the measured latency already carries their queueing,
so at a central balancer's concurrency that product lets the active count
outvote a 10x latency difference (benchmarks/README.md has the arithmetic).
Here latency leads: the cost is latency x (1 + x / (x + y + 1)), where x and y
are the two candidates' active streams per unit of weight. Load can at most
double the cost, so an endpoint more than 2x slower than the other candidate
is left out until its latency decays (a probe, then the peak again) or the
other's rises under load; between endpoints of equal latency the less loaded
one wins, as with least_conn.
"""

from __future__ import annotations

import math
import random

from proxy.balancing.endpoint import Endpoint
from proxy.balancing.p2c import two_choices

# Seconds. Finagle and Linkerd use 10; at a central balancer's call rates a
# latency peak (a GC pause, a stalled loop) then marks a fast endpoint slow for
# many seconds while a slow one decays into favour. 2 s measured steadier.
DECAY = 2.0
# An endpoint with no sample yet that already has a call in flight: keep it
# to one call until it answers (Finagle's penalty).
PENALTY = 1e6


def observe(ep: Endpoint, rtt: float, now: float) -> None:
    """Record one response-header latency ``rtt`` (s) seen at ``now``."""
    st = ep.state
    if rtt > st.latency:
        st.latency = rtt
    else:
        w = math.exp(-max(now - st.latency_at, 0.0) / DECAY)
        st.latency = st.latency * w + rtt * (1.0 - w)
    st.latency_at = now


def latency(ep: Endpoint, now: float) -> float:
    """The decayed average; 0 while the endpoint has answered nothing yet."""
    st = ep.state
    value = st.latency
    age = now - st.latency_at
    return value * math.exp(-age / DECAY) if age > 0.0 and value else value


def cost(ep: Endpoint, other: Endpoint, now: float) -> float:
    """``ep``'s cost when drawn against ``other``."""
    value = latency(ep, now)
    if value == 0.0:
        active = ep.state.active
        return PENALTY + active if active else 0.0
    load = ep.state.active / ep.weight
    return value * (1.0 + load / (load + other.state.active / other.weight + 1.0))


class LeastTime:
    __slots__ = ("rand",)

    def __init__(self, rand: random.Random | None = None) -> None:
        self.rand = rand

    def pick(self, candidates: list[Endpoint], ctx: object, now: float) -> Endpoint:
        return two_choices(candidates, lambda b, a: cost(b, a, now) < cost(a, b, now), self.rand)
