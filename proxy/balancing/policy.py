"""What a balancing policy sees of a call, and the policy for a config.

A policy is built once per group of endpoints in a pool snapshot (so a hash
ring is built once per pool change, not per call) and picks among the
endpoints of that group that may take the call now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from proxy.balancing.endpoint import Endpoint
from proxy.config.model import Balance
from proxy.http2.hpack_codec import HeaderList


@dataclass(frozen=True, slots=True)
class PickContext:
    """The request, for policies that route by it (hash, ip_hash, subset).
    Made only for pools whose policy needs it."""

    peer: str  # the client's "host:port" ("[v6]:port")
    headers: HeaderList
    path: str  # "/package.Service/Method"


class Policy(Protocol):
    def pick(
        self, candidates: list[Endpoint], ctx: PickContext | None, now: float
    ) -> Endpoint | None:
        """One of ``candidates`` (a non-empty subset of the group the policy
        was built for, in the group's order)."""


CONTEXT_KINDS = frozenset(("ip_hash", "hash"))


def make_policy(balance: Balance, group: tuple[Endpoint, ...]) -> Policy:
    # Imported here: each module imports this one for PickContext.
    from proxy.balancing import hashing, least_conn, least_time, p2c, round_robin, weighted_random

    kind = balance.kind
    if kind == "random":
        return weighted_random.WeightedRandom()
    if kind == "least_conn":
        return least_conn.LeastConn()
    if kind == "random_two":
        return p2c.TwoChoicesLeastConn()
    if kind == "least_time":
        return least_time.LeastTime()
    if kind == "ip_hash":
        return hashing.IpHash(group)
    if kind == "hash":
        key = hashing.key_reader(balance.key)
        if balance.consistent:
            return hashing.ConsistentHash(group, key)
        return hashing.Hash(group, key)
    return round_robin.RoundRobin()
