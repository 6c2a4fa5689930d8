"""Sticky policies: ``ip_hash``, ``hash KEY`` and ``hash KEY consistent``.

The first two follow nginx's arithmetic (ngx_http_upstream_ip_hash_module,
ngx_http_upstream_hash_module): the key picks a weighted slot over the whole
group in config order, so a key keeps its endpoint while the group does not
change; when that endpoint cannot take the call the key is rehashed, up to
20 times, then round robin takes over. ``consistent`` is ketama hashing as
nginx's: 160 points per weight unit on a ring of CRC32 values, built once
per snapshot; a key goes to the first point at or after its hash that
belongs to an eligible endpoint, so adding or removing one endpoint moves
only the keys of that endpoint's arcs (about 1/N of them).
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left
from collections.abc import Callable
from zlib import crc32

from proxy.balancing.endpoint import Endpoint
from proxy.balancing.policy import PickContext
from proxy.balancing.round_robin import pick_smooth_weighted

MAX_TRIES = 20  # nginx: then fall back to round robin
POINTS_PER_WEIGHT = 160  # nginx's ketama

KeyReader = Callable[[PickContext | None], bytes]


def remote_host(peer: str) -> str:
    """ "1.2.3.4:5" -> "1.2.3.4"; "::1:5" or "[::1]:5" -> "::1"."""
    return peer.rpartition(":")[0].strip("[]") if ":" in peer else peer


def key_reader(key: str) -> KeyReader:
    """How to read a (validated) ``hash`` key from a request."""
    if key == "$remote_addr":
        return lambda ctx: remote_host(ctx.peer).encode() if ctx else b""
    if key == "$grpc_method":  # the whole method name: /package.Service/Method
        return lambda ctx: ctx.path.encode() if ctx else b""
    if key == "$grpc_service":
        return lambda ctx: ctx.path[1:].partition("/")[0].encode() if ctx else b""
    assert key.startswith("$http_")
    name = key[6:].replace("_", "-").encode()

    def header(ctx: PickContext | None) -> bytes:
        if ctx is not None:
            for k, v in ctx.headers:
                if k == name:
                    return v
        return b""

    return header


def _slot(group: tuple[Endpoint, ...], total: int, h: int) -> Endpoint:
    w = h % total
    for ep in group:
        if w < ep.weight:
            return ep
        w -= ep.weight
    return group[-1]


def ip_key(peer: str) -> bytes:
    """nginx's ip_hash input: the first three octets of IPv4, all of IPv6."""
    try:
        ip = ipaddress.ip_address(remote_host(peer))
    except ValueError:
        return peer.encode()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    packed = ip.packed
    return packed[:3] if len(packed) == 4 else packed


class IpHash:
    __slots__ = ("group", "total")

    def __init__(self, group: tuple[Endpoint, ...]) -> None:
        self.group = group
        self.total = sum(ep.weight for ep in group)

    def pick(
        self, candidates: list[Endpoint], ctx: PickContext | None, now: float
    ) -> Endpoint | None:
        addr = ip_key(ctx.peer) if ctx is not None else b""
        h = 89
        for _ in range(MAX_TRIES):
            for byte in addr:
                h = (h * 113 + byte) % 6271
            ep = _slot(self.group, self.total, h)
            if ep in candidates:
                return ep
        return pick_smooth_weighted(candidates)


class Hash:
    __slots__ = ("group", "total", "key")

    def __init__(self, group: tuple[Endpoint, ...], key: KeyReader) -> None:
        self.group = group
        self.total = sum(ep.weight for ep in group)
        self.key = key

    def pick(
        self, candidates: list[Endpoint], ctx: PickContext | None, now: float
    ) -> Endpoint | None:
        key = self.key(ctx)
        h = 0
        for rehash in range(MAX_TRIES):
            # Cache::Memcached compatible, as nginx: crc32([REHASH] KEY) >> 16.
            prefix = str(rehash).encode() if rehash else b""
            h += (crc32(prefix + key) >> 16) & 0x7FFF
            ep = _slot(self.group, self.total, h)
            if ep in candidates:
                return ep
        return pick_smooth_weighted(candidates)


def build_ring(group: tuple[Endpoint, ...]) -> tuple[list[int], list[Endpoint]]:
    """Sorted ring points and the endpoint owning each. An endpoint's points
    depend only on its own address and weight.

    As nginx's ngx_http_upstream_init_chash: each point is the CRC32 of the
    previous point, seeded with CRC32(host NUL port). Chaining matters: CRC32
    is linear, so hashing "addr-j" directly gives two endpoints whose ports
    differ by a digit rings that are XOR-shifted copies of each other, and
    arcs skewed far from 1/N."""
    points: list[tuple[int, int]] = []
    for i, ep in enumerate(group):
        host, _, port = str(ep.address).rpartition(":")
        base = crc32(b"%s\0%s" % (host.encode(), port.encode()))
        prev = 0
        for _ in range(POINTS_PER_WEIGHT * ep.weight):
            prev = crc32(prev.to_bytes(4, "little"), base)
            points.append((prev, i))
    points.sort()
    return [h for h, _ in points], [group[i] for _, i in points]


class ConsistentHash:
    __slots__ = ("hashes", "owners", "key")

    def __init__(self, group: tuple[Endpoint, ...], key: KeyReader) -> None:
        self.hashes, self.owners = build_ring(group)
        self.key = key

    def pick(
        self, candidates: list[Endpoint], ctx: PickContext | None, now: float
    ) -> Endpoint | None:
        owners = self.owners
        n = len(owners)
        if not n:
            return None
        start = bisect_left(self.hashes, crc32(self.key(ctx)))
        first = owners[start % n]
        if first in candidates:
            return first
        eligible = set(candidates)
        for i in range(start + 1, start + n):
            ep = owners[i % n]
            if ep in eligible:
                return ep
        return None
